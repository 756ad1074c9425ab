package supervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func journalEntry(seq int) JournalEntry {
	start := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC).Add(time.Duration(seq) * time.Minute)
	return JournalEntry{
		Seq: seq, Command: fmt.Sprintf("echo %d", seq), Argv: []string{"echo", fmt.Sprint(seq)}, Cwd: "/workspace",
		ExitCode: seq % 3, TimedOut: seq%2 == 0, DurationMs: int64(seq) * 10,
		StartedAt: start, FinishedAt: start.Add(time.Second),
		Stdout: fmt.Sprintf("%d\n", seq), Stderr: "warning: \"quoted\" \u00e9\n", StdoutTruncated: seq == 2,
	}
}

func TestJournalRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), JournalFile)
	var want []JournalEntry
	for seq := 1; seq <= 3; seq++ {
		e := journalEntry(seq)
		if err := appendJournal(p, e); err != nil {
			t.Fatal(err)
		}
		want = append(want, e)
	}
	got, err := ReadJournal(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ReadJournal =\n%+v\nwant\n%+v", got, want)
	}
	data, _ := os.ReadFile(p)
	if n := strings.Count(string(data), "\n"); n != 3 {
		t.Errorf("journal has %d lines, want one per entry:\n%s", n, data)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("journal mode = %v, want 0600", fi.Mode().Perm())
	}
}

func TestReadJournalMissing(t *testing.T) {
	got, err := ReadJournal(filepath.Join(t.TempDir(), JournalFile))
	if err != nil {
		t.Fatal(err)
	}
	// An empty slice, not nil: it is rendered as [] in JSON.
	if got == nil || len(got) != 0 {
		t.Errorf("ReadJournal of a missing file = %#v, want an empty slice", got)
	}
}

// A crash in the middle of an append leaves a torn last line; it is
// skipped, and the entries before it are kept.
func TestReadJournalTornLastLine(t *testing.T) {
	p := filepath.Join(t.TempDir(), JournalFile)
	for seq := 1; seq <= 2; seq++ {
		if err := appendJournal(p, journalEntry(seq)); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"seq":3,"command":"ech`)
	f.Close()
	got, err := ReadJournal(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Seq != 1 || got[1].Seq != 2 {
		t.Fatalf("ReadJournal = %+v, want entries 1 and 2", got)
	}

	// The next command after the crash is kept too: it is not glued to
	// the torn line.
	if err := appendJournal(p, journalEntry(3)); err != nil {
		t.Fatal(err)
	}
	got, err = ReadJournal(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || !reflect.DeepEqual(got[2], journalEntry(3)) {
		t.Errorf("after a torn line and one more append, ReadJournal = %+v, want entries 1, 2 and 3", got)
	}
}

// Lines that do not parse anywhere in the file are skipped, as are blank
// lines.
func TestReadJournalSkipsDamagedLines(t *testing.T) {
	p := filepath.Join(t.TempDir(), JournalFile)
	content := "\n" + `{"seq":1,"command":"a"}` + "\nnot json\n" + `{"seq":2,"command":"b"}` + "\n\n"
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadJournal(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Command != "a" || got[1].Command != "b" {
		t.Errorf("ReadJournal = %+v, want a and b", got)
	}
}

// A journal line may be long: the output kept of both streams, escaped.
func TestJournalLongLines(t *testing.T) {
	p := filepath.Join(t.TempDir(), JournalFile)
	e := journalEntry(1)
	e.Stdout = strings.Repeat("\x01", journalOutputLimit) // escaped as \u0001: six bytes each
	e.Stderr = strings.Repeat("<>", journalOutputLimit/2)
	if err := appendJournal(p, e); err != nil {
		t.Fatal(err)
	}
	got, err := ReadJournal(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Stdout != e.Stdout || got[0].Stderr != e.Stderr {
		t.Errorf("a long entry did not round-trip (%d entries read)", len(got))
	}
}

// Several writers at once (supervisors serialise through the workspace
// lock, but O_APPEND must keep lines whole even without it).
func TestJournalConcurrentAppends(t *testing.T) {
	p := filepath.Join(t.TempDir(), JournalFile)
	const writers, each = 8, 25
	var wg sync.WaitGroup
	errc := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				e := journalEntry(w*each + i + 1)
				// Large enough that a write is not trivially atomic.
				e.Stdout = strings.Repeat(fmt.Sprint(w), 8<<10)
				if err := appendJournal(p, e); err != nil {
					errc <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	got, err := ReadJournal(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != writers*each {
		t.Fatalf("ReadJournal found %d whole entries, want %d", len(got), writers*each)
	}
	seen := map[int]bool{}
	for _, e := range got {
		w := (e.Seq - 1) / each
		if e.Stdout != strings.Repeat(fmt.Sprint(w), 8<<10) || seen[e.Seq] {
			t.Fatalf("entry %d is damaged or repeated", e.Seq)
		}
		seen[e.Seq] = true
	}
}
