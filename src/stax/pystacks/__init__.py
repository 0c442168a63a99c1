"""Python stacks of a CPython target read from its memory: the interpreter located in the
target's mappings (stax.pystacks.locate), version layouts as offset tables
(stax.pystacks.layout), the memory reader (stax.pystacks.procmem), code-object locations
(stax.pystacks.codeloc) and the thread/frame walk (stax.pystacks.reader)."""
