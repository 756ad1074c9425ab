package guest

import (
	"os"
	"testing"
	"time"
)

func TestReaperDeliversExitStatus(t *testing.T) {
	r := newReaper()
	for _, tc := range []struct {
		argv []string
		code int
	}{
		{[]string{"/bin/true"}, 0},
		{[]string{"/bin/sh", "-c", "exit 7"}, 7},
	} {
		_, ch, err := r.start(func() (int, error) {
			p, err := os.StartProcess(tc.argv[0], tc.argv, &os.ProcAttr{Files: []*os.File{nil, nil, nil}})
			if err != nil {
				return 0, err
			}
			pid := p.Pid // Release resets it
			p.Release()
			return pid, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		select {
		case ws := <-ch:
			if ws.ExitStatus() != tc.code {
				t.Errorf("%v: exit %d, want %d", tc.argv, ws.ExitStatus(), tc.code)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%v: no exit status delivered", tc.argv)
		}
	}
}
