"""``python -m nag ...`` is ``python -m nag.run ...``."""
from nag.run import main

if __name__ == "__main__":
    main()
