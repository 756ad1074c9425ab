package supervisor

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pyro-sandbox/pyro/internal/host"
	"github.com/pyro-sandbox/pyro/internal/store"
)

// newWorkspace makes a store in a temp dir with one workspace directory,
// and keeps supervisor sockets in the temp dir too.
func newWorkspace(t *testing.T) (*store.Store, string) {
	t.Helper()
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	st := &store.Store{Dir: t.TempDir()}
	id := store.NewID()
	if err := os.MkdirAll(st.WorkspaceDir(id), 0o700); err != nil {
		t.Fatal(err)
	}
	return st, id
}

func touch(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

func gone(t *testing.T, what, p string) {
	t.Helper()
	if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s %s is still there (%v)", what, p, err)
	}
}

func needBootID(t *testing.T) string {
	t.Helper()
	boot := host.BootID()
	if boot == "" {
		t.Skip("no boot id on this host")
	}
	return boot
}

func TestKillRunning(t *testing.T) {
	boot := needBootID(t)
	st, id := newWorkspace(t)
	sup, vmm := startSleep(t), startSleep(t)
	sock := st.SocketPath(id)
	touch(t, sock)
	b := Bootstrap{
		PID: sup.pid(), StartTime: sup.startTime(t), BootID: boot, Socket: sock,
		VMMPID: vmm.pid(), VMMStart: vmm.startTime(t), StartedAt: time.Now().UTC(),
	}
	if err := WriteBootstrap(st.Path(id, BootstrapFile), b); err != nil {
		t.Fatal(err)
	}

	KillRunning(st, id)

	sup.waitKilled(t)
	vmm.waitKilled(t)
	gone(t, "socket", sock)
	gone(t, "bootstrap", st.Path(id, BootstrapFile))
}

// A supervisor that died before it recorded a VMM: only it is killed.
func TestKillRunningWithoutVMM(t *testing.T) {
	boot := needBootID(t)
	st, id := newWorkspace(t)
	sup := startSleep(t)
	sock := filepath.Join(t.TempDir(), "s.sock")
	touch(t, sock)
	b := Bootstrap{PID: sup.pid(), StartTime: sup.startTime(t), BootID: boot, Socket: sock}
	if err := WriteBootstrap(st.Path(id, BootstrapFile), b); err != nil {
		t.Fatal(err)
	}
	KillRunning(st, id)
	sup.waitKilled(t)
	gone(t, "socket", sock)
	gone(t, "bootstrap", st.Path(id, BootstrapFile))
}

// The pids a bootstrap names may have been reused by unrelated processes:
// those are never killed, and what the dead supervisor left is still
// removed.
func TestKillRunningSparesOtherProcesses(t *testing.T) {
	boot := needBootID(t)
	for _, tc := range []struct {
		name   string
		mutate func(*Bootstrap)
	}{
		{"start times differ", func(b *Bootstrap) { b.StartTime++; b.VMMStart++ }},
		{"another boot of the host", func(b *Bootstrap) { b.BootID = "00000000-0000-0000-0000-000000000000" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, id := newWorkspace(t)
			sup, vmm := startSleep(t), startSleep(t)
			sock := filepath.Join(t.TempDir(), "s.sock")
			touch(t, sock)
			b := Bootstrap{
				PID: sup.pid(), StartTime: sup.startTime(t), BootID: boot, Socket: sock,
				VMMPID: vmm.pid(), VMMStart: vmm.startTime(t),
			}
			tc.mutate(&b)
			if err := WriteBootstrap(st.Path(id, BootstrapFile), b); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			KillRunning(st, id)
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("KillRunning waited %v for processes it did not kill", d)
			}
			sup.stillRuns(t)
			vmm.stillRuns(t)
			gone(t, "socket", sock)
			gone(t, "bootstrap", st.Path(id, BootstrapFile))
		})
	}
}

// Without a bootstrap, a supervisor that died before writing it may have
// left its socket at the workspace's socket path.
func TestKillRunningWithoutBootstrap(t *testing.T) {
	st, id := newWorkspace(t)
	sock := st.SocketPath(id)
	touch(t, sock)
	KillRunning(st, id)
	gone(t, "socket", sock)

	// Nothing at all: nothing to do, and no panic.
	KillRunning(st, id)
}

// A damaged bootstrap names no process: nothing is killed, the file and
// the socket path are removed.
func TestKillRunningDamagedBootstrap(t *testing.T) {
	st, id := newWorkspace(t)
	sock := st.SocketPath(id)
	touch(t, sock)
	if err := os.WriteFile(st.Path(id, BootstrapFile), []byte(`{"pid": 1, "sta`), 0o600); err != nil {
		t.Fatal(err)
	}
	KillRunning(st, id)
	gone(t, "socket", sock)
	gone(t, "bootstrap", st.Path(id, BootstrapFile))
}
