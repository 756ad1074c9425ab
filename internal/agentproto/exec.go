package agentproto

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Exec runs req in the guest. Output goes to stdout and stderr as it
// arrives; stdin, when not nil, is sent to the process (req.Stdin is set
// accordingly). It returns when the guest reports the exit status. When ctx
// ends first the stream is aborted, which makes the agent kill the process.
func (s *Session) Exec(ctx context.Context, req ExecRequest, stdin io.Reader, stdout, stderr io.Writer) (*ExitStatus, error) {
	req.Stdin = stdin != nil
	st, err := s.Open(ctx, OpExec, req)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	if stdin == nil {
		if err := st.CloseSend(); err != nil {
			return nil, err
		}
	} else {
		copyCtx, stopCopy := context.WithCancel(ctx)
		defer stopCopy()
		go func() {
			if _, err := io.Copy(stdinWriter{copyCtx, st}, stdin); err == nil {
				st.CloseSend()
			}
		}()
	}
	var exit *ExitStatus
	for {
		m, err := st.Recv(ctx)
		if errors.Is(err, io.EOF) {
			if exit == nil {
				return nil, protocolErrorf("exec stream %d ended without an exit status", st.id)
			}
			return exit, nil
		}
		if err != nil {
			return nil, err
		}
		switch m.Type {
		case FrameData:
			w := stdout
			switch m.Channel {
			case ChannelStdout:
			case ChannelStderr:
				w = stderr
			default:
				return nil, protocolErrorf("exec output on channel %d", m.Channel)
			}
			if _, err := w.Write(m.Data); err != nil {
				return nil, fmt.Errorf("writing command output: %w", err)
			}
		case FrameEvent:
			var ev Event
			if err := decodeControl(m.Data, &ev); err != nil {
				return nil, err
			}
			switch ev.Event {
			case EventStarted:
			case EventExit:
				if ev.Exit == nil || exit != nil {
					return nil, protocolErrorf("malformed exit event")
				}
				exit = ev.Exit
			default:
				return nil, protocolErrorf("unknown exec event %q", truncate(ev.Event, 32))
			}
		}
	}
}

// stdinWriter sends stdin until Exec returns.
type stdinWriter struct {
	ctx context.Context
	st  *Stream
}

func (w stdinWriter) Write(p []byte) (int, error) {
	return w.st.SendData(w.ctx, ChannelStdin, p)
}
