package shellquote

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestShellQuote(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "''"},
		{"git", "git"},
		{"--version", "--version"},
		{"a/b.c_d-e:f,g+h@i%j^k", "a/b.c_d-e:f,g+h@i%j^k"},
		{"key=value", "key=value"},
		{"two words", "'two words'"},
		{"it's", `'it'"'"'s'`},
		{"$HOME", "'$HOME'"},
		{"*", "'*'"},
		{"~", "'~'"},
		{"a;b", "'a;b'"},
		{"line\nbreak", "'line\nbreak'"},
		{"é", "'é'"},
	} {
		if got := Quote(tc.in); got != tc.want {
			t.Errorf("Quote(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestShellJoin(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		want string
	}{
		{[]string{"git", "--version"}, "git --version"},
		{[]string{"sh", "-c", "cc --version && make"}, "sh -c 'cc --version && make'"},
		{[]string{"echo", ""}, "echo ''"},
		{[]string{"env", "A=1", "cmd"}, "env A=1 cmd"},
		// A first word with '=' would be an assignment, and a reserved
		// word would be syntax: both are quoted to stay the command.
		{[]string{"A=1", "cmd"}, "'A=1' cmd"},
		{[]string{"if", "x"}, "'if' x"},
		{[]string{"echo", "if"}, "echo if"},
	} {
		if got := Join(tc.argv); got != tc.want {
			t.Errorf("Join(%q) = %s, want %s", tc.argv, got, tc.want)
		}
	}
}

var roundTripArgs = [][]string{
	{"git", "--version"},
	{"sh", "-c", "echo \"$HOME\" && ls -la | wc -l; exit 3"},
	{"printf", "%s\\n", "it's", `"double"`, "back\\slash", "`cmd`", "$(cmd)", "${x}"},
	{"echo", "", " ", "  two  spaces  ", "\t", "new\nline", "\r\n"},
	{"glob", "*", "?", "[a-z]", "{a,b}", "~", "~root", "a*b"},
	{"ops", ";", "&", "&&", "|", "||", ">", "<", ">>", "2>&1", "(", ")", "#", "#comment", "!"},
	{"utf8", "é", "日本語", "emoji 🎉", "\x01\x7f"},
	{"eq", "A=1", "--opt=val", "=", "=="},
	{"safe", "-_./=:,+@%^"},
	{"quotes", "'", "''", "'''", `'"'`, `"'"`},
}

// TestShellJoinRoundTrip has a POSIX shell split shellJoin's output back.
func TestShellJoinRoundTrip(t *testing.T) {
	shell, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal("sh not found: the round trip needs a POSIX shell")
	}
	for _, argv := range roundTripArgs {
		script := "set -- " + Join(argv) + `; for a in "$@"; do printf '%s\0' "$a"; done`
		out, err := exec.Command(shell, "-c", script).Output()
		if err != nil {
			t.Errorf("sh -c %q: %v", script, err)
			continue
		}
		got := strings.Split(string(out), "\x00")
		got = got[:len(got)-1]
		if !slices.Equal(got, argv) {
			t.Errorf("round trip of %q gave %q", argv, got)
		}
	}
}

// TestShellJoinRunsTheCommand checks the first word too: the shell runs
// argv[0] with the rest as its arguments.
func TestShellJoinRunsTheCommand(t *testing.T) {
	shell, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal("sh not found: the round trip needs a POSIX shell")
	}
	dir := t.TempDir()
	for _, name := range []string{"show args", "A=1", "if", "it's"} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\nprintf '%s\\0' \"$0\" \"$@\"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, argv := range [][]string{
		{"./show args", "a b", "$x"},
		{"A=1", "B=2", "x"},
		{"if", "then"},
		{"it's", "fi"},
	} {
		cmd := exec.Command(shell, "-c", Join(argv))
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PATH="+dir+":/usr/bin:/bin")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Errorf("sh -c %s: %v: %s", Join(argv), err, stderr.String())
			continue
		}
		got := strings.Split(string(out), "\x00")
		got = got[:len(got)-1]
		if len(got) != len(argv) || filepath.Base(got[0]) != filepath.Base(argv[0]) || !slices.Equal(got[1:], argv[1:]) {
			t.Errorf("sh -c %s ran %q, want %q", Join(argv), got, argv)
		}
	}
}
