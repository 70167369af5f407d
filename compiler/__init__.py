"""Compiler: `.rlm` text -> AST -> checks -> passes -> Plan. Never imports the runtime."""
