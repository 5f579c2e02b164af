#!/usr/bin/env python3
"""Section 3 man pages for libsock, written once: from the doc comments of
include/libsock.h (which cbindgen generates from the `///` comments of
src/ffi.rs and src/types.rs and from the text of cbindgen.toml), and, for
the overview page libsock(3), from man/libsock.md.

  scripts/gen-man.py OUTDIR          write OUTDIR/<name>.3 for every
                                     documented function and function-like
                                     macro of the header, and libsock.3
  scripts/gen-man.py --list          the page names, one a line
  scripts/gen-man.py --self-test     check the converter on small inputs

Options: --header FILE (include/libsock.h), --overview FILE (man/libsock.md).

The doc comments use a small markup, which this script turns into man(7)
requests: paragraphs separated by blank lines, `- ` bullet items (their
continuation lines indented), `# Title` sub-headings, `code` and **bold**.
man/libsock.md uses the same markup, plus `# SECTION` / `## Sub` headings
and ``` code blocks. A function page gets: NAME (the first sentence of its
doc), LIBRARY, SYNOPSIS (the prototype, and the definitions of the structs
and unions it names), DESCRIPTION (the doc; "Returns ..." paragraphs go to
RETURN VALUE; the fields of those structs with their docs) and SEE ALSO
(libsock(3) and the pages its text names).
"""

import argparse
import os
import re
import sys
import textwrap

# ---- reading the header --------------------------------------------------


class Item:
    """A documented declaration: a function or a function-like macro."""

    def __init__(self, name, kind, synopsis, doc, code, group=None):
        self.name = name  # sock_flush
        self.kind = kind  # "function" or "macro"
        self.synopsis = synopsis  # one declaration, whitespace normalised
        self.doc = doc  # the doc comment's text (markup)
        self.code = code  # the text that names the types it uses
        self.group = group  # (title, text) of the comment block above it
        self.body = ""  # an inline function's body


class Type:
    """A documented struct or union typedef."""

    def __init__(self, name, doc, definition, fields):
        self.name = name  # sock_write_info_s
        self.doc = doc
        self.definition = definition  # C text, doc comments removed
        self.fields = fields  # [(field name, doc)]


def comment_text(body):
    """The text of a /* */ comment's body: the leading ' * ' of each line
    removed, surrounding blank lines dropped."""
    lines = []
    for line in body.split("\n"):
        line = re.sub(r"^\s*\*( |$)", "", line.rstrip())
        lines.append(line)
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


COMMENT = re.compile(r"/\*(\*?)(.*?)\*/", re.S)


def matching_brace(text, start):
    """Index just after the brace that closes the one at text[start]."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i + 1
    raise ValueError("unbalanced braces")


def strip_comments(text):
    return COMMENT.sub("", text)


def parse_type(code):
    """A `typedef struct|union name { ... } name;`: its name, its C
    definition without comments, its documented fields, and where it ends
    in `code`."""
    open_ = code.index("{")
    end = matching_brace(code, open_)
    semi = code.index(";", end)
    name = code[end:semi].strip()
    fields = []
    for m in re.finditer(r"/\*\*(.*?)\*/([^;]*);", code[open_ + 1 : end - 1], re.S):
        decl = m.group(2)
        fp = re.search(r"\(\s*\*\s*(\w+)\s*\)", decl)  # ret (*name)(args)
        field = fp.group(1) if fp else re.search(r"(\w+)\s*(:\s*\d+\s*)?$", decl).group(1)
        fields.append((field, comment_text(m.group(1))))
    definition = "\n".join(line for line in strip_comments(code[: semi + 1]).split("\n") if line.strip())
    return name, definition, fields, semi + 1


def parse_header(text):
    """Returns (version, items, types) of the header's documented
    functions, function-like macros and struct/union typedefs."""
    m = re.search(r'#define LIB_SOCK "([^"]+)"', text)
    version = m.group(1) if m else ""
    items, types = [], {}
    group = None
    comments = list(COMMENT.finditer(text))
    skip_until = 0  # the end of the last struct parsed (its field docs)
    for n, c in enumerate(comments):
        if c.start() < skip_until:
            continue
        is_doc, body = c.group(1) == "*", c.group(2)
        nxt = comments[n + 1].start() if n + 1 < len(comments) else len(text)
        if not is_doc:
            first = comment_text(body).split("\n")[0]
            t = re.match(r"(.*?)\s*-{5,}\s*$", first)
            if t:  # a group heading: "Title ------"
                group = (t.group(1).strip(), "\n".join(comment_text(body).split("\n")[1:]).strip())
            continue
        doc = comment_text(body)
        code = text[c.end() :]
        stripped = code.lstrip()
        if stripped.startswith("#define"):
            lines = []
            for line in stripped.split("\n"):
                lines.append(line)
                if not line.rstrip().endswith("\\"):
                    break
            mm = re.match(r"#define\s+(\w+)(\([^)]*\))?", lines[0])
            if not mm.group(2):
                continue  # an object-like macro: described in libsock(3)
            synopsis = "#define %s%s" % (mm.group(1), mm.group(2))
            items.append(Item(mm.group(1), "macro", synopsis, doc, "\n".join(lines), group))
        elif re.match(r"typedef\s+(struct|union)\s+\w+\s*\{", stripped):
            name, definition, fields, end = parse_type(stripped)
            skip_until = len(text) - len(stripped) + end
            types[name] = Type(name, doc, definition, fields)
        elif stripped.startswith("typedef") or stripped.startswith("#"):
            continue
        else:
            region = text[c.end() : nxt].lstrip()
            ends = [i for i in (region.find(";"), region.find("{")) if i >= 0]
            if not ends or "(" not in region[: min(ends)]:
                continue  # not a function declaration
            decl = re.sub(r"\bUNUSED_FUNC\s+", "", region[: min(ends)])
            decl = re.sub(r"\s+", " ", decl).strip()
            decl = decl.replace("( ", "(").replace(" )", ")")
            name = re.search(r"(\w+)\s*\(", decl).group(1)
            item = Item(name, "function", decl + ";", doc, decl, group)
            if region[min(ends)] == "{":  # an inline function: its body
                item.body = region[min(ends) : matching_brace(region, min(ends))]
            items.append(item)
    return version, items, types


# ---- the markup ----------------------------------------------------------

SPECIAL = {"\u2014": r"\(em", "\u2013": r"\(en", "\u2192": r"\(->", "\u00d7": r"\(mu"}


def escape(s, code=False):
    """Text for a roff line: backslashes, minus signs (in code, and a minus
    before a digit), non-ASCII characters."""
    s = s.replace("\\", r"\e")
    if code:
        s = s.replace("-", r"\-")
    else:
        s = re.sub(r"(^|[\s(])-(?=[\dA-Za-z])", r"\1\\-", s)
    out = []
    for ch in s:
        if ord(ch) < 128:
            out.append(ch)
        else:
            out.append(SPECIAL.get(ch, r"\[u%04X]" % ord(ch)))
    return "".join(out)


def inline(s):
    """`code` -> bold, **bold** -> bold, the rest escaped."""
    out = []
    for part in re.split(r"(`[^`]*`|\*\*[^*]+\*\*)", s):
        if part.startswith("`") and part.endswith("`") and len(part) >= 2:
            out.append(r"\fB" + escape(part[1:-1], code=True) + r"\fP")
        elif part.startswith("**") and part.endswith("**") and len(part) >= 4:
            out.append(r"\fB" + inline(part[2:-2]).replace(r"\fB", "").replace(r"\fP", "") + r"\fP")
        else:
            out.append(escape(part))
    return "".join(out)


def plain(s):
    """Markup removed (for the NAME line)."""
    return re.sub(r"\*\*([^*]+)\*\*", r"\1", s.replace("`", ""))


def roff_line(s):
    """A text line that roff must not read as a request."""
    s = s.strip()
    return "\\&" + s if s[:1] in (".", "'") else s


def text_lines(lines):
    """A paragraph's lines as roff text: joined (so that `code` and **bold**
    may span source lines), converted, and wrapped again."""
    text = inline(" ".join(line.strip() for line in lines))
    wrapped = textwrap.wrap(text, 78, break_long_words=False, break_on_hyphens=False)
    return [roff_line(line) for line in wrapped]


def code_line(s):
    """A line of a no-fill block: indentation kept, escaped."""
    s = escape(s.rstrip(), code=True)
    return "\\&" + s if s[:1] in (".", "'") or not s else s


def blocks(text):
    """Splits markup into ("p", lines), ("li", lines), ("h", level, title)
    and ("code", lines) blocks."""
    out = []
    cur = None
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip().startswith("```"):
            code = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                code.append(lines[i])
                i += 1
            out.append(("code", code))
            cur = None
        elif not line.strip():
            cur = None
        elif re.match(r"#+ ", line):
            level = len(line) - len(line.lstrip("#"))
            out.append(("h", level, line[level:].strip()))
            cur = None
        elif re.match(r"\s*- ", line):
            cur = ["li", [re.sub(r"^\s*- ", "", line)]]
            out.append(cur)
        elif cur is not None and (cur[0] == "p" or line.startswith(" ")):
            cur[1].append(line.strip())
        else:
            cur = ["p", [line.strip()]]
            out.append(cur)
        i += 1
    return [tuple(b) for b in out]


def render_blocks(bl, sh_level=0):
    """man(7) requests for blocks: a heading of `sh_level` or fewer `#`
    becomes .SH, a deeper one .SS."""
    out = []
    for b in bl:
        if b[0] == "h":
            req = ".SH" if b[1] <= sh_level else ".SS"
            out.append('%s "%s"' % (req, escape(b[2]).replace('"', "")))
        elif b[0] in ("p", "li"):
            out.append(".PP" if b[0] == "p" else r".IP \(bu 2")
            out.extend(text_lines(b[1]))
        elif b[0] == "code":
            out.append(".PP")
            out.append(".in +4n")
            out.append(".EX")
            out.extend(code_line(line) for line in b[1])
            out.append(".EE")
            out.append(".in")
    # no .PP right after a section heading
    fixed = []
    for line in out:
        if line == ".PP" and fixed and fixed[-1].startswith((".SH", ".SS")):
            continue
        fixed.append(line)
    return fixed


ABBREV = ("e.g", "i.e", "etc", "vs")


def first_sentence(text):
    """The doc's first sentence, up to '. ', '; ' or ': ' outside
    parentheses, without its final period, for the NAME line."""
    bl = blocks(text)
    para = " ".join(bl[0][1]) if bl and bl[0][0] in ("p", "li") else ""
    depth = 0
    for i, ch in enumerate(para):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and ch in ".;:" and (i + 1 == len(para) or para[i + 1] == " "):
            if ch == "." and para[:i].lower().endswith(ABBREV):
                continue
            para = para[:i]
            break
    s = plain(para).strip().rstrip(".")
    if len(s) > 60:  # a NAME line is short: asides and examples go
        s = re.sub(r", e\.g\..*", "", s)
        s = re.sub(r" \u2014 [^\u2014]* \u2014", "", s)
        while re.search(r" \([^()]*\)", s):
            s = re.sub(r" \([^()]*\)", "", s)
    if len(s) > 1 and s[0].isupper() and not s[1].isupper():
        s = s[0].lower() + s[1:]
    return s


# ---- pages ---------------------------------------------------------------


def wrap_prototype(decl, width=72):
    """Breaks a long prototype after commas, aligning with its '('."""
    if len(decl) <= width or "(" not in decl:
        return [decl]
    indent = decl.index("(") + 1
    lines, cur = [], ""
    for part in re.split(r"(?<=,) ", decl):
        if cur and len(cur) + 1 + len(part) > width:
            lines.append(cur)
            cur = " " * indent + part
        else:
            cur = cur + " " + part if cur else part
    lines.append(cur)
    return lines


def types_used(code, types):
    """The struct/union typedefs `code` names, and those they name, in
    header order."""
    found = []

    def visit(text):
        for name in types:
            if name not in found and re.search(r"\b%s\b" % re.escape(name), text):
                found.append(name)
                visit(types[name].definition)

    visit(code)
    order = list(types)
    return sorted(found, key=order.index)


def th(name, version):
    """The page header. No hyphenation (identifiers must not be split), so
    lines are left-aligned rather than stretched."""
    return '.TH %s 3 "" "libsock %s" "libsock"\n.nh\n.ad l' % (escape(name.upper()), escape(version))


def page(item, items, types, version):
    names = [i.name for i in items]
    bl = blocks(item.doc)
    desc, ret = [], []
    for k, b in enumerate(bl):
        if b[0] == "p" and k > 0 and b[1][0].startswith("Returns"):
            ret.append(b)
        else:
            desc.append(b)
    used = types_used(item.code, types)
    out = [th(item.name, version), ".SH NAME", r"%s \- %s" % (escape(item.name), escape(first_sentence(item.doc)))]
    out += [".SH LIBRARY", r"libsock (\fIlibsock.so\fP, \fIlibsock.a\fP; \fB\-lsock\fP)"]
    out += [".SH SYNOPSIS", ".nf", ".B #include <libsock.h>"]
    for t in used:
        out.append(".PP")
        out.extend(code_line(line) for line in types[t].definition.split("\n"))
    out.append(".PP")
    out.extend(r"\fB" + escape(line, code=True) + r"\fP" for line in wrap_prototype(item.synopsis))
    out.append(".fi")
    out.append(".SH DESCRIPTION")
    out += render_blocks(desc, sh_level=0)
    for t in used:
        ty = types[t]
        out.append('.SS "%s"' % escape(t))
        out += render_blocks(blocks(ty.doc), sh_level=0)
        for field, fdoc in ty.fields:
            out.append(".TP")
            out.append(r"\fB%s\fP" % escape(field, code=True))
            body = render_blocks(blocks(fdoc), sh_level=0)
            out += body[1:] if body[:1] == [".PP"] else body
    if item.group:
        title, text = item.group
        out.append('.SS "%s"' % escape(title))
        out += render_blocks(blocks(text), sh_level=0)
    if ret:
        out.append(".SH RETURN VALUE")
        out += render_blocks(ret, sh_level=0)[1:]
    # the pages its doc, its group's text, a macro's definition or an
    # inline function's body name
    text = "\n".join([item.doc, item.group[1] if item.group else "", item.code, item.body])
    refs = [n for n in names if n != item.name and re.search(r"\b%s\b" % re.escape(n), text)]
    out.append(".SH SEE ALSO")
    see = ["libsock"] + refs
    for k, n in enumerate(see):
        out.append(".BR %s (3)%s" % (escape(n), "," if k + 1 < len(see) else ""))
    return "\n".join(out) + "\n"


def overview(md, items, version):
    """libsock(3) from man/libsock.md: `# X` headings are sections, `## Y`
    sub-sections; @VERSION@ is the header's version, @PAGES@ the list of
    the other pages, and `name(N)` references in SEE ALSO are set as such."""
    md = md.replace("@VERSION@", version)
    out = [th("libsock", version)]
    section = None
    for line in render_blocks(blocks(md), sh_level=1):
        if line.startswith(".SH"):
            section = line[4:].strip('"')
            out.append(line)
        elif section == "NAME" and not line.startswith("."):
            out.append(line.replace(" - ", r" \- ", 1))  # "name \- summary"
        elif section == "SEE ALSO" and not line.startswith("."):
            for ref in re.split(r",\s*", line.rstrip(",")):
                if ref == "@PAGES@":
                    out.extend(".BR %s (3)," % escape(n) for n in sorted(i.name for i in items))
                elif ref:
                    m = re.fullmatch(r"([\w.\\-]+)\((\w+)\)", ref)
                    if not m:
                        raise ValueError("SEE ALSO: not a page reference: %r" % ref)
                    out.append(".BR %s (%s)," % (m.group(1), m.group(2)))
        else:
            out.append(line)
    if out[-1].endswith(","):
        out[-1] = out[-1][:-1]
    return "\n".join(out) + "\n"


def write_pages(outdir, header, md):
    version, items, types = parse_header(header)
    items = sorted(items, key=lambda i: i.name)
    os.makedirs(outdir, exist_ok=True)
    pages = {i.name + ".3": page(i, items, types, version) for i in items}
    pages["libsock.3"] = overview(md, items, version)
    for name, text in pages.items():
        path = os.path.join(outdir, name)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="ascii") as f:
            f.write(text)
        os.replace(tmp, path)
    for name in os.listdir(outdir):  # pages of names the header lost
        if name.endswith(".3") and name not in pages:
            os.remove(os.path.join(outdir, name))
    return sorted(pages)


# ---- self-test -----------------------------------------------------------

SAMPLE = r"""
#define LIB_SOCK "9.8.7"
/* not a doc comment */
/**
 * Options.
 */
typedef struct opts_s {
  /**
   * The target.
   */
  intptr_t uuid;
  /**
   * A hook.
   */
  ssize_t (*hook)(intptr_t uuid, const void *buf);
  /**
   * A bit.
   */
  unsigned int bit: 1;
} opts_s;
/**
 * Sends `n` bytes (not `e.g.` a file; see sample_macro). Returns fast.
 *
 * Returns 0, or -1 with `errno` `EINVAL` when n is -1:
 * - a list item
 *   continued
 * - another — with a dash
 *
 * # Safety
 * `p` must be .valid
 */
ssize_t sample_fn(struct opts_s o,
                  const char *p);
/** Object-like: no page. */
#ifndef SIZE
#define SIZE 1
#endif
/* Callbacks ----------------------------------------------------------------
 *
 * Defined by the program.
 */
/**
 * Queues data, e.g. `sample_macro(.uuid = u)`. C only.
 */
#define sample_macro(...) sample_fn((opts_s){__VA_ARGS__})
/**
 * Called back.
 */
void cb(intptr_t uuid);
"""


def self_test():
    checks = []

    def check(what, got, want):
        checks.append((what, got == want, got, want))

    version, items, types = parse_header(SAMPLE)
    check("version", version, "9.8.7")
    check("item names", [i.name for i in items], ["sample_fn", "sample_macro", "cb"])
    check("prototype", items[0].synopsis, "ssize_t sample_fn(struct opts_s o, const char *p);")
    check("macro synopsis", items[1].synopsis, "#define sample_macro(...)")
    check("group", items[2].group, ("Callbacks", "Defined by the program."))
    check("no group before it", items[0].group, None)
    check("type fields", [f for f, _ in types["opts_s"].fields], ["uuid", "hook", "bit"])
    check("types used by a macro", types_used(items[1].code, types), ["opts_s"])
    check("first sentence", first_sentence(items[0].doc), "sends n bytes (not e.g. a file; see sample_macro)")
    check("first sentence, e.g.", first_sentence(items[1].doc), "queues data, e.g. sample_macro(.uuid = u)")
    check(
        "long first sentence shortened",
        first_sentence("Does a thing (with a long aside here) \u2014 and another aside \u2014 to all the connections, e.g. `x`."),
        "does a thing to all the connections",
    )
    check("inline", inline("`a-b` **x** -1 non-blocking \\n"), r"\fBa\-b\fP \fBx\fP \-1 non-blocking \en")
    check("non-ascii", escape("a \u2014 b \u00e9"), r"a \(em b \[u00E9]")
    check("request-safe line", roff_line(".x"), r"\&.x")
    bl = blocks(items[0].doc)
    check("blocks", [b[0] for b in bl], ["p", "p", "li", "li", "h", "p"])
    check("list continuation", bl[2][1], ["a list item", "continued"])
    check("bold across lines", text_lines(["a **b", "c** d"]), [r"a \fBb c\fP d"])
    check("wrap", wrap_prototype("int f(int a, int b)", 12), ["int f(int a,", "      int b)"])
    text = page(items[0], items, types, version)
    check("return value section", ".SH RETURN VALUE\nReturns 0" in text, True)
    check("see also", text.rstrip().endswith(".BR sample_macro (3)"), True)
    check("struct in synopsis", "typedef struct opts_s {" in text, True)
    check("field list", ".TP\n\\fBhook\\fP\nA hook." in text, True)
    ov = overview("# NAME\nlibsock - sockets\n# SEE ALSO\n@PAGES@, epoll(7)\n", items, version)
    check("overview name", r"libsock \- sockets" in ov, True)
    check("overview see also", ".BR cb (3),\n.BR sample_fn (3),\n.BR sample_macro (3),\n.BR epoll (7)\n" in ov, True)
    bad = [c for c in checks if not c[1]]
    for what, ok, got, want in checks:
        if not ok:
            print("self-test %s: got %r, want %r" % (what, got, want), file=sys.stderr)
    print("gen-man self-test: %d checks, %d failed" % (len(checks), len(bad)))
    return 1 if bad else 0


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--header", default=os.path.join(root, "include", "libsock.h"))
    ap.add_argument("--overview", default=os.path.join(root, "man", "libsock.md"))
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("outdir", nargs="?")
    a = ap.parse_args()
    if a.self_test:
        return self_test()
    with open(a.header, encoding="utf-8") as f:
        header = f.read()
    if a.list:
        _, items, _ = parse_header(header)
        print("\n".join(sorted([i.name for i in items] + ["libsock"])))
        return 0
    if not a.outdir:
        ap.error("OUTDIR missing")
    with open(a.overview, encoding="utf-8") as f:
        md = f.read()
    write_pages(a.outdir, header, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
