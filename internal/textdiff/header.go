package textdiff

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"
)

// devNull is the name of a missing file in a diff header.
const devNull = "/dev/null"

// headerName returns name as a "---" or "+++" line shows it. Like git, it
// quotes a name that holds a double quote, a backslash or a control
// character (C-style, with octal escapes), and ends a name that holds a space
// with a tab, so that a reader which cuts a name at its first tab, as patch
// tools do, gets all of it.
func headerName(name string) string {
	if needsQuoting(name) {
		return quote(name)
	}
	if strings.Contains(name, " ") {
		return name + "\t"
	}
	return name
}

// gitName returns name as a "diff --git" line shows it: quoted when needed.
func gitName(name string) string {
	if needsQuoting(name) {
		return quote(name)
	}
	return name
}

func needsQuoting(name string) bool {
	for i := 0; i < len(name); {
		r, size := utf8.DecodeRuneInString(name[i:])
		if r == utf8.RuneError && size == 1 || r < 0x20 || r == 0x7f || r == '"' || r == '\\' {
			return true
		}
		i += size
	}
	return false
}

// quote quotes name the way git does when core.quotePath is false: valid
// UTF-8 stays as it is, other bytes and control characters are escaped.
func quote(name string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(name); {
		r, size := utf8.DecodeRuneInString(name[i:])
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\a':
			b.WriteString(`\a`)
		case r == '\b':
			b.WriteString(`\b`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\v':
			b.WriteString(`\v`)
		case r == '\f':
			b.WriteString(`\f`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == utf8.RuneError && size == 1 || r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\%03o`, name[i])
		default:
			b.WriteString(name[i : i+size])
		}
		i += size
	}
	b.WriteByte('"')
	return b.String()
}

// writeEmptyFileHeader writes the creation (oldName is /dev/null) or the
// deletion (newName is /dev/null) of an empty file the way git does, since a
// unified diff has no hunk to show it: a "diff --git" line with the file's
// name on both sides and a mode line. The mode is the one of an ordinary
// file, as Unified does not know modes.
func writeEmptyFileHeader(out *bytes.Buffer, oldName, newName string) {
	mode := "new file mode 100644"
	if newName == devNull {
		mode = "deleted file mode 100644"
		newName = swapPrefix(oldName, "a/", "b/")
	} else {
		oldName = swapPrefix(newName, "b/", "a/")
	}
	fmt.Fprintf(out, "diff --git %s %s\n%s\n", gitName(oldName), gitName(newName), mode)
}

// swapPrefix returns name with the prefix from replaced by to, or name
// itself when it does not start with from.
func swapPrefix(name, from, to string) string {
	if rest, ok := strings.CutPrefix(name, from); ok {
		return to + rest
	}
	return name
}
