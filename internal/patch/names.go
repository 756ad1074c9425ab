package patch

import (
	"path"
	"strconv"
	"strings"
	"unicode/utf8"
)

const devNull = "/dev/null"

// headerPath returns the clean path that the rest of a "---" or "+++" line
// names, without prefix ("a/" or "b/"), or "" for /dev/null. A name ends at
// a tab (diff writes a timestamp after it) unless it is quoted, as git
// quotes names with special characters.
func (p *parser) headerPath(line int, rest, prefix string) (string, error) {
	rest = eol(rest)
	var name string
	if strings.HasPrefix(rest, `"`) {
		var ok bool
		if name, _, ok = unquote(rest); !ok {
			return "", p.errorf(line, hintPath, "malformed quoted file name %s", show(rest))
		}
	} else {
		name, _, _ = strings.Cut(rest, "\t")
	}
	return p.path(line, name, prefix)
}

// path checks a file name of the patch and returns it clean and without
// prefix, or "" for /dev/null.
func (p *parser) path(line int, name, prefix string) (string, error) {
	if name == devNull {
		return "", nil
	}
	switch {
	case !utf8.ValidString(name):
		return "", p.errorf(line, hintPath, "file name %q is not valid UTF-8", name)
	case strings.IndexByte(name, 0) >= 0:
		return "", p.errorf(line, hintPath, "file name %q contains a NUL byte", name)
	case strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return "", p.errorf(line, hintPath, "file name %q contains a control character", name)
	case len(name) > maxPathBytes:
		return "", p.errorf(line, hintPath, "file name %s is longer than %d bytes", show(name), maxPathBytes)
	}
	rel := strings.TrimPrefix(name, prefix)
	if strings.HasPrefix(rel, "/") {
		return "", p.errorf(line, hintPath, "file name %q is an absolute path", name)
	}
	for _, c := range strings.Split(rel, "/") {
		if c == ".." {
			return "", p.errorf(line, hintPath, "file name %q leaves its directory with ..", name)
		}
	}
	rel = path.Clean(rel)
	if rel == "." {
		return "", p.errorf(line, hintPath, "file name %q is empty", name)
	}
	return rel, nil
}

// splitGitNames splits the names of a "diff --git" line. Each may be
// quoted; two unquoted ones are told apart only when they name the same
// file, as git does, since a space may be part of a name.
func splitGitNames(s string) (oldName, newName string, ok bool) {
	if strings.HasPrefix(s, `"`) {
		oldName, rest, ok := unquote(s)
		if !ok {
			return "", "", false
		}
		rest, ok = strings.CutPrefix(rest, " ")
		if !ok {
			return "", "", false
		}
		if strings.HasPrefix(rest, `"`) {
			newName, rest, ok = unquote(rest)
			return oldName, newName, ok && rest == ""
		}
		return oldName, rest, rest != ""
	}
	if strings.HasSuffix(s, `"`) {
		for i := strings.Index(s, ` "`); i >= 0; {
			if newName, rest, ok := unquote(s[i+1:]); ok && rest == "" {
				return s[:i], newName, true
			}
			j := strings.Index(s[i+1:], ` "`)
			if j < 0 {
				break
			}
			i += 1 + j
		}
		return "", "", false
	}
	if len(s)%2 == 0 || s[len(s)/2] != ' ' {
		return "", "", false
	}
	oldName, newName = s[:len(s)/2], s[len(s)/2+1:]
	if strings.TrimPrefix(oldName, "a/") != strings.TrimPrefix(newName, "b/") {
		return "", "", false
	}
	return oldName, newName, true
}

// unquote reads the C-style quoted name at the start of s, as git writes
// it, and returns it and the rest of s.
func unquote(s string) (name, rest string, ok bool) {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			name, err := strconv.Unquote(s[:i+1])
			return name, s[i+1:], err == nil
		}
	}
	return "", "", false
}
