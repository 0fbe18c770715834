"""Tokenizer training, encoding into token shards, and mixture accounting.

Importing the package registers its `llamix` commands (`tokenize`, `mixture`).
"""

from tokenizer import encode, mixture  # noqa: F401
