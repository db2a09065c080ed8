"""Camera and body geometry shared by training and the node: pinhole projection, the view turned
onto a person's optical axis, stature, the root translation and the REP-155 body frame."""
