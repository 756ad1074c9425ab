// Package shellquote renders argv as a POSIX shell command line, for
// results and histories that show a command as one string.
package shellquote

import "strings"

// Join renders argv as one command line a POSIX shell would split
// back into argv.
func Join(argv []string) string {
	parts := make([]string, len(argv))
	for i, a := range argv {
		parts[i] = Quote(a)
		// In the first word, an unquoted '=' makes an assignment and a
		// reserved word is syntax, not the command.
		if i == 0 && parts[i] == a && (strings.Contains(a, "=") || reservedWords[a]) {
			parts[i] = "'" + a + "'"
		}
	}
	return strings.Join(parts, " ")
}

// reservedWords are the shell words that mean syntax in command position
// (POSIX, and the common extensions of bash and ksh).
var reservedWords = map[string]bool{
	"case": true, "do": true, "done": true, "elif": true, "else": true, "esac": true,
	"fi": true, "for": true, "if": true, "in": true, "then": true, "until": true, "while": true,
	"function": true, "select": true, "time": true, "coproc": true,
}

// Quote quotes one word for a POSIX shell, only when needed.
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%^", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}
