import sys

from stream_ingest.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["sensor", *sys.argv[1:]]))
