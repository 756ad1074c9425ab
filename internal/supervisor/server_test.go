package supervisor

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/pyro-sandbox/pyro/internal/agentproto"
	"github.com/pyro-sandbox/pyro/internal/shellquote"
)

func execBody(t *testing.T, req agentproto.ExecRequest) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func data(channel uint8, b []byte) agentproto.Message {
	return agentproto.Message{Type: agentproto.FrameData, Channel: channel, Data: b}
}

func event(s string) agentproto.Message {
	return agentproto.Message{Type: agentproto.FrameEvent, Data: []byte(s)}
}

func TestExecRecorder(t *testing.T) {
	argv := []string{"sh", "-c", "echo 'a b'; exit 3"}
	before := time.Now()
	r := newExecRecorder(execBody(t, agentproto.ExecRequest{Argv: argv, Cwd: "/workspace/src"}))

	r.observe(event(`{"event":"started","pid":7}`))
	if r.exit != nil {
		t.Fatalf("a started event was taken as the exit")
	}
	// stdout: more than the limit, in uneven chunks.
	var stdout []byte
	for i := 0; len(stdout) < journalOutputLimit+5000; i++ {
		chunk := bytes.Repeat([]byte{byte('a' + i%26)}, 3001)
		stdout = append(stdout, chunk...)
		r.observe(data(agentproto.ChannelStdout, chunk))
	}
	// stderr: under it.
	r.observe(data(agentproto.ChannelStderr, []byte("warn 1\n")))
	r.observe(data(agentproto.ChannelStderr, []byte("warn 2\n")))
	r.observe(event(`{"event":"exit","exit":{"code":3,"timed_out":true,"duration_ms":42,"stdout_bytes":1,"stderr_bytes":2}}`))
	if r.exit == nil {
		t.Fatalf("the exit event was not observed")
	}

	e := r.entry()
	if e.Command != shellquote.Join(argv) {
		t.Errorf("Command = %q, want %q", e.Command, shellquote.Join(argv))
	}
	if len(e.Argv) != 3 || e.Argv[2] != argv[2] || e.Cwd != "/workspace/src" {
		t.Errorf("Argv, Cwd = %q, %q", e.Argv, e.Cwd)
	}
	if e.Stdout != string(stdout[:journalOutputLimit]) || !e.StdoutTruncated {
		t.Errorf("Stdout kept %d bytes (truncated %v), want the first %d and truncated", len(e.Stdout), e.StdoutTruncated, journalOutputLimit)
	}
	if e.Stderr != "warn 1\nwarn 2\n" || e.StderrTruncated {
		t.Errorf("Stderr = %q (truncated %v), want both lines, not truncated", e.Stderr, e.StderrTruncated)
	}
	if e.ExitCode != 3 || !e.TimedOut || e.DurationMs != 42 {
		t.Errorf("exit = code %d, timed out %v, %d ms; want 3, true, 42", e.ExitCode, e.TimedOut, e.DurationMs)
	}
	if e.StartedAt.Before(before) || e.FinishedAt.Before(e.StartedAt) {
		t.Errorf("StartedAt %v, FinishedAt %v: not in order", e.StartedAt, e.FinishedAt)
	}
}

// Output of exactly the limit is whole, not truncated; one byte more is.
func TestExecRecorderLimitEdge(t *testing.T) {
	r := newExecRecorder(execBody(t, agentproto.ExecRequest{Argv: []string{"true"}}))
	r.observe(data(agentproto.ChannelStdout, bytes.Repeat([]byte("x"), journalOutputLimit)))
	r.observe(data(agentproto.ChannelStderr, bytes.Repeat([]byte("y"), journalOutputLimit+1)))
	e := r.entry()
	if len(e.Stdout) != journalOutputLimit || e.StdoutTruncated {
		t.Errorf("stdout at the limit: %d bytes, truncated %v; want %d, false", len(e.Stdout), e.StdoutTruncated, journalOutputLimit)
	}
	if len(e.Stderr) != journalOutputLimit || !e.StderrTruncated {
		t.Errorf("stderr over the limit: %d bytes, truncated %v; want %d, true", len(e.Stderr), e.StderrTruncated, journalOutputLimit)
	}
}

// What the guest sends is untrusted: odd events and a malformed request
// must not break the recorder.
func TestExecRecorderIgnoresNoise(t *testing.T) {
	r := newExecRecorder(json.RawMessage(`{"argv": 12}`))
	r.observe(event(`not json`))
	r.observe(event(`{"event":"exit"}`)) // no status
	r.observe(event(`{"event":"result","exit":{"code":9}}`))
	r.observe(agentproto.Message{Type: agentproto.FrameWindow, Data: []byte{0, 0, 0, 1}})
	if r.exit != nil {
		t.Fatalf("exit = %+v from events that are not a well-formed exit", r.exit)
	}
	e := r.entry()
	if e.ExitCode != 0 || e.Stdout != "" || e.Stderr != "" || e.StdoutTruncated || e.StderrTruncated {
		t.Errorf("entry = %+v, want an empty one", e)
	}
}
