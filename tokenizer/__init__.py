"""Tokenizer training, encoding into token shards, and mixture accounting.

Importing the package registers its `llamix` commands (`tokenizer train`, `tokenize`,
`mixture`).
"""

from tokenizer import encode, mixture, train  # noqa: F401
