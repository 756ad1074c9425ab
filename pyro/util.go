package pyro

import (
	"os/exec"
	"strings"
)

func lookPath(name string) (string, error) { return exec.LookPath(name) }

// shellJoin renders argv as one command line a POSIX shell would split
// back into argv.
func shellJoin(argv []string) string {
	parts := make([]string, len(argv))
	for i, a := range argv {
		parts[i] = shellQuote(a)
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

func shellQuote(s string) string {
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
