"""Print the project's install_requires (from setup.cfg), one per line: the Dockerfile installs
them in a layer of their own, so a change to Millrace's code does not reinstall them."""
import configparser
import pathlib
import sys

config = configparser.ConfigParser()
config.read(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "setup.cfg"))
for line in config["options"]["install_requires"].splitlines():
    line = line.split("#", 1)[0].strip()
    if line:
        print(line)
