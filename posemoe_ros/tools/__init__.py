"""Around the pipeline, without ROS: offline lifting of keypoint files, the scripted demo scene,
pictures of skeletons."""
