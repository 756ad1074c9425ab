package supervisor

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"time"
)

// JournalFile is the name of a workspace's command history.
const JournalFile = "journal.jsonl"

// JournalEntry is one command run in a workspace.
type JournalEntry struct {
	Seq             int       `json:"seq"`
	Command         string    `json:"command"`
	Argv            []string  `json:"argv"`
	Cwd             string    `json:"cwd"`
	ExitCode        int       `json:"exit_code"`
	TimedOut        bool      `json:"timed_out"`
	DurationMs      int64     `json:"duration_ms"`
	StartedAt       time.Time `json:"started_at"`
	FinishedAt      time.Time `json:"finished_at"`
	Stdout          string    `json:"stdout"`
	Stderr          string    `json:"stderr"`
	StdoutTruncated bool      `json:"stdout_truncated"`
	StderrTruncated bool      `json:"stderr_truncated"`
}

// journalOutputLimit bounds the output kept per stream in the history.
const journalOutputLimit = 16 << 10

// appendJournal adds e as one line; O_APPEND keeps concurrent writers'
// lines whole.
func appendJournal(path string, e JournalEntry) error {
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	// A crash mid-write leaves a last line without its newline; end it
	// first, or this entry would be glued to it and lost as well.
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
		var last [1]byte
		if _, err := f.ReadAt(last[:], fi.Size()-1); err == nil && last[0] != '\n' {
			data = append([]byte{'\n'}, data...)
		}
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ReadJournal returns the history, oldest first. Lines that do not parse
// (a crash mid-write) are skipped.
func ReadJournal(path string) ([]JournalEntry, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return []JournalEntry{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := []JournalEntry{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var e JournalEntry
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			out = append(out, e)
		}
	}
	return out, sc.Err()
}
