package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// qmp is a client of QEMU's machine protocol on one connection: a line of
// JSON per command, answered by a line with "return" or "error"; lines
// with "event" may come in between and are skipped. Only the commands a
// template needs are used, so no library is worth its weight here.
type qmp struct {
	conn *net.UnixConn
	r    *bufio.Reader
}

func newQMP(f *os.File) (*qmp, error) {
	c, err := net.FileConn(f)
	if err != nil {
		return nil, err
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("the QMP channel is not a unix socket")
	}
	// A line longer than the buffer is an error (ReadSlice): QEMU's
	// answers to these commands are small.
	return &qmp{conn: uc, r: bufio.NewReaderSize(uc, 64<<10)}, nil
}

type qmpReply struct {
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event    string          `json:"event"`
	Greeting json.RawMessage `json:"QMP"`
}

func (q *qmp) readLine() (qmpReply, error) {
	var r qmpReply
	line, err := q.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return r, fmt.Errorf("QMP line longer than %d bytes", q.r.Size())
	}
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(line, &r); err != nil {
		return r, fmt.Errorf("QMP said %q: %w", line, err)
	}
	return r, nil
}

// handshake reads QEMU's greeting and leaves negotiation mode.
func (q *qmp) handshake(ctx context.Context) error {
	defer q.deadline(ctx)()
	r, err := q.readLine()
	if err != nil {
		return fmt.Errorf("reading QMP's greeting: %w", err)
	}
	if r.Greeting == nil {
		return fmt.Errorf("QMP did not greet")
	}
	_, err = q.execute(ctx, "qmp_capabilities", nil, nil)
	return err
}

// execute runs a command and returns its result. files, if any, travel
// with the command (SCM_RIGHTS), for getfd.
func (q *qmp) execute(ctx context.Context, cmd string, args any, files []*os.File) (json.RawMessage, error) {
	defer q.deadline(ctx)()
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	if _, _, err := q.conn.WriteMsgUnix(append(b, '\n'), oob, nil); err != nil {
		return nil, fmt.Errorf("QMP %s: %w", cmd, err)
	}
	for {
		r, err := q.readLine()
		if err != nil {
			return nil, fmt.Errorf("QMP %s: %w", cmd, err)
		}
		switch {
		case r.Error != nil:
			return nil, fmt.Errorf("QMP %s: %s: %s", cmd, r.Error.Class, r.Error.Desc)
		case r.Return != nil:
			return r.Return, nil
		}
		// An event: not the answer.
	}
}

// deadline makes the connection's reads and writes end with ctx.
func (q *qmp) deadline(ctx context.Context) func() {
	stop := context.AfterFunc(ctx, func() { q.conn.SetDeadline(time.Unix(1, 0)) })
	return func() { stop() }
}

func (q *qmp) close() error { return q.conn.Close() }

// migrateTo saves the machine's state to f (RAM in a shared file is left
// out; see Args) and waits until QEMU says it is complete. The machine is
// stopped at the end, as a migrated-away machine is.
func (q *qmp) migrateTo(ctx context.Context, f *os.File) error {
	if _, err := q.execute(ctx, "getfd", map[string]string{"fdname": "pyro-state"}, []*os.File{f}); err != nil {
		return err
	}
	if _, err := q.execute(ctx, "migrate", map[string]string{"uri": "fd:pyro-state"}, nil); err != nil {
		return err
	}
	// QEMU reports the end only as a state to ask for (or an event that
	// needs a capability turned on first); the save takes milliseconds.
	for {
		res, err := q.execute(ctx, "query-migrate", nil, nil)
		if err != nil {
			return err
		}
		var st struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		if err := json.Unmarshal(res, &st); err != nil {
			return fmt.Errorf("QMP query-migrate: %w", err)
		}
		switch st.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("saving the machine's state %s: %s", st.Status, st.ErrorDesc)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}
