#!/usr/bin/env python3
"""Embed a file into C as `const unsigned char NAME[]` and `const size_t NAME_len`.

Unsigned, so bytes above 0x7f convert without overflow (-Woverflow).

Usage: embed.py INPUT OUTPUT.c NAME
"""
import sys


def main():
    src, out, name = sys.argv[1:4]
    with open(src, "rb") as f:
        data = f.read()
    lines = []
    for i in range(0, len(data), 16):
        lines.append("    " + ", ".join("0x%02x" % b for b in data[i:i + 16]) + ",")
    with open(out, "w") as f:
        f.write("/* Generated from %s by embed.py; do not edit. */\n" % src.split("/")[-1])
        f.write("#include <stddef.h>\n\n")
        f.write("const unsigned char %s[] = {\n%s\n    0x00\n};\n" % (name, "\n".join(lines)))
        f.write("const size_t %s_len = %d;\n" % (name, len(data)))


if __name__ == "__main__":
    main()
