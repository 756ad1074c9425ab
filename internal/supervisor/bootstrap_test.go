package supervisor

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pyro-sandbox/pyro/internal/host"
)

func TestBootstrapRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), BootstrapFile)
	want := Bootstrap{
		PID: 4242, StartTime: 123456789, BootID: "0b0e1d2c-aaaa-bbbb-cccc-000000000000",
		Socket: "/run/user/1000/pyro/abc.sock", VMMPID: 4343, VMMStart: 123456999,
		StartedAt: time.Date(2025, 3, 4, 5, 6, 7, 8000, time.UTC),
	}
	if err := WriteBootstrap(p, want); err != nil {
		t.Fatal(err)
	}
	got, ok, err := ReadBootstrap(p)
	if err != nil || !ok {
		t.Fatalf("ReadBootstrap = ok %v, err %v; want the bootstrap", ok, err)
	}
	if got != want {
		t.Errorf("ReadBootstrap = %+v, want %+v", got, want)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("bootstrap mode = %v, want 0600", perm)
	}
	// A second write replaces the first (the supervisor adds its VMM).
	want.VMMPID = 77
	if err := WriteBootstrap(p, want); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := ReadBootstrap(p); got.VMMPID != 77 {
		t.Errorf("after rewrite VMMPID = %d, want 77", got.VMMPID)
	}
}

func TestReadBootstrapNone(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		data string // "" means no file
	}{
		{"missing file", ""},
		{"damaged JSON", `{"pid": 12, "start_ti`},
		{"not JSON at all", "\x00\x01garbage"},
		{"wrong type", `{"pid": "twelve"}`},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
		if tc.data != "" {
			if err := os.WriteFile(p, []byte(tc.data), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		b, ok, err := ReadBootstrap(p)
		if ok || err != nil {
			t.Errorf("%s: ReadBootstrap = %+v, ok %v, err %v; want ok=false and no error", tc.name, b, ok, err)
		}
	}
}

func TestReadBootstrapUnreadable(t *testing.T) {
	// A directory where the file should be is an error, not "no bootstrap".
	p := filepath.Join(t.TempDir(), BootstrapFile)
	if err := os.Mkdir(p, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := ReadBootstrap(p); ok || err == nil {
		t.Errorf("ReadBootstrap of a directory = ok %v, err %v; want an error", ok, err)
	}
}

// child is a process started by a test, reaped in the background so that a
// kill is seen as the process going away.
type child struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startChild(t *testing.T, name string, args ...string) *child {
	t.Helper()
	cmd := exec.Command(name, args...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-c.done
	})
	return c
}

func startSleep(t *testing.T) *child { return startChild(t, "sleep", "300") }

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) startTime(t *testing.T) uint64 {
	t.Helper()
	st, err := processStartTime(c.pid())
	if err != nil {
		t.Fatalf("processStartTime(%d): %v", c.pid(), err)
	}
	return st
}

// waitKilled waits for the child to end and checks that SIGKILL ended it.
func (c *child) waitKilled(t *testing.T) {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("process %d still runs", c.pid())
	}
	ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("process %d ended with %v, want killed by SIGKILL", c.pid(), c.cmd.ProcessState)
	}
}

// stillRuns checks, after a moment, that the child has not ended.
func (c *child) stillRuns(t *testing.T) {
	t.Helper()
	select {
	case <-c.done:
		t.Fatalf("process %d ended (%v); it must not have been killed", c.pid(), c.cmd.ProcessState)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestProcessStartTime(t *testing.T) {
	self, err := processStartTime(os.Getpid())
	if err != nil {
		t.Fatalf("processStartTime(self): %v", err)
	}
	if self == 0 {
		t.Fatalf("processStartTime(self) = 0")
	}
	if again, _ := processStartTime(os.Getpid()); again != self {
		t.Errorf("start time changed between reads: %d, then %d", self, again)
	}
	c := startSleep(t)
	st := c.startTime(t)
	if st < self {
		t.Errorf("child started at %d, before its parent (%d)", st, self)
	}
	if !sameProcess(c.pid(), st, host.BootID()) {
		t.Errorf("sameProcess(child, its start time, this boot) = false")
	}
}

// The command name sits in parentheses in /proc/<pid>/stat and may itself
// hold spaces and parentheses; the fields after it must still be found.
func TestProcessStartTimeOddCommandName(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	odd := filepath.Join(t.TempDir(), "a) b (c) 1 2")
	if err := os.Symlink(sleep, odd); err != nil {
		t.Fatal(err)
	}
	c := startChild(t, odd, "300")
	// The kernel keeps up to 15 bytes of the name: all of this one.
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(c.pid()) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(stat), "(a) b (c) 1 2)") {
		t.Skipf("the kernel did not keep the odd name: %q", stat)
	}
	plain := startSleep(t)
	st := c.startTime(t)
	pst := plain.startTime(t)
	// Both children started within the same few ticks.
	if diff := int64(pst) - int64(st); diff < 0 || diff > 1000 {
		t.Errorf("odd-named child started at %d, a later plain one at %d: the parser took the wrong field", st, pst)
	}
}

func TestSameProcessRefuses(t *testing.T) {
	boot := host.BootID()
	if boot == "" {
		t.Skip("no boot id on this host")
	}
	c := startSleep(t)
	st := c.startTime(t)

	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		pid    int
		start  uint64
		bootID string
	}{
		{"dead pid", dead.Process.Pid, st, boot},
		{"wrong start time (pid reused)", c.pid(), st + 1, boot},
		{"start time zero", c.pid(), 0, boot},
		{"another boot of the host", c.pid(), st, "00000000-0000-0000-0000-000000000000"},
		{"no boot id recorded", c.pid(), st, ""},
		{"pid zero", 0, st, boot},
		{"negative pid", -1, st, boot},
	} {
		if sameProcess(tc.pid, tc.start, tc.bootID) {
			t.Errorf("%s: sameProcess(%d, %d, %q) = true, want false", tc.name, tc.pid, tc.start, tc.bootID)
		}
	}
	if !sameProcess(c.pid(), st, boot) {
		t.Errorf("sameProcess with the right identity = false")
	}
}

// A killed child that its parent has not reaped yet is a zombie: it is no
// longer the process that was recorded.
func TestSameProcessZombie(t *testing.T) {
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	pid := cmd.Process.Pid
	st, err := processStartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			t.Fatal(err)
		}
		if i := strings.LastIndexByte(string(data), ')'); i >= 0 && strings.HasPrefix(string(data[i+1:]), " Z") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d did not become a zombie", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := processStartTime(pid); err == nil {
		t.Errorf("processStartTime of a zombie succeeded")
	}
	if sameProcess(pid, st, host.BootID()) {
		t.Errorf("sameProcess of a zombie = true")
	}
}

func TestKillIfSame(t *testing.T) {
	boot := host.BootID()
	if boot == "" {
		t.Skip("no boot id on this host")
	}
	c := startSleep(t)
	st := c.startTime(t)

	if killIfSame(c.pid(), st+1, boot) {
		t.Errorf("killIfSame with a wrong start time reported a kill")
	}
	if killIfSame(c.pid(), st, "00000000-0000-0000-0000-000000000000") {
		t.Errorf("killIfSame with a wrong boot id reported a kill")
	}
	if killIfSame(0, st, boot) {
		t.Errorf("killIfSame(pid 0) reported a kill")
	}
	c.stillRuns(t)

	if !killIfSame(c.pid(), st, boot) {
		t.Fatalf("killIfSame with the right identity did not kill")
	}
	c.waitKilled(t)
	if killIfSame(c.pid(), st, boot) {
		t.Errorf("killIfSame of a process already gone reported a kill")
	}
}
