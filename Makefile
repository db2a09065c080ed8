# Everything a fresh machine needs, from one command each (see README.md).
.PHONY: setup test demo clean

setup:
	bash scripts/setup_env.sh

# The venv is a ROS install prefix: this is what sourcing a ROS setup.bash would export.
# ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST keeps DDS traffic on this machine; each test also
# picks its own ROS_DOMAIN_ID (test/conftest.py).
ROS_ENV = AMENT_PREFIX_PATH=$(CURDIR)/.venv ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST

test: setup
	$(ROS_ENV) .venv/bin/python -m pytest -q test

# The whole system on a virtual camera, recorded and measured (docs/demo.md); results in out/demo/.
# Options: make demo DEMO_ARGS="--duration 60 --people 5"
demo: setup
	$(ROS_ENV) .venv/bin/python -m posemoe_ros.ros.tools.demo $(DEMO_ARGS)

clean:
	rm -rf build .venv
