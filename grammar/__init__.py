"""The `.rlm` grammar, shipped as package data (``rlm.lark``) and loaded by the compiler."""
