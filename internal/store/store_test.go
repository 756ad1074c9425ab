package store

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pyro-sandbox/pyro/internal/env"
	"github.com/pyro-sandbox/pyro/internal/errs"
)

func sampleRecord(id string) *Record {
	t0 := time.Date(2025, 6, 7, 8, 9, 10, 0, time.UTC)
	return &Record{
		ID: id, Name: "my-ws", Labels: map[string]string{"team": "a"}, Environment: "debian:12",
		State: StateStarted, ExecutionMode: "vm", VCPUCount: 2, MemMiB: 1024, NetworkPolicy: "off",
		Seed:      Seed{Mode: "directory", SeedPath: "/home/u/src"},
		Secrets:   []Secret{{Name: "TOKEN", SourceKind: "literal"}},
		CreatedAt: t0, LastActivity: t0.Add(time.Minute), TTLSeconds: 3600, CommandCount: 2,
		LastCommand: &CommandSummary{Command: "make", ExitCode: 1, DurationMs: 5, FinishedAt: t0.Add(time.Minute)},
		LastError:   "none",
		Manifest:    env.Manifest{Schema: 1, Name: "debian", Version: "12"},
		Accelerator: "kvm", DiskBytes: 8 << 30, Generation: 1,
	}
}

func newStore(t *testing.T) *Store {
	t.Helper()
	return &Store{Dir: t.TempDir()}
}

func TestCreateWriteRead(t *testing.T) {
	s := newStore(t)
	id := NewID()
	want := sampleRecord(id)
	if err := s.Create(want, id); err != nil {
		t.Fatal(err)
	}
	var got Record
	if err := s.Read(id, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, want) {
		t.Errorf("Read after Create =\n%+v\nwant\n%+v", got, *want)
	}

	want.State, want.CommandCount = StateStopped, 3
	if err := s.Write(id, want); err != nil {
		t.Fatal(err)
	}
	got = Record{}
	if err := s.Read(id, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, want) {
		t.Errorf("Read after Write =\n%+v\nwant\n%+v", got, *want)
	}

	for _, p := range []string{s.WorkspaceDir(id), s.Path(id, "workspace.json")} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if perm := fi.Mode().Perm(); perm&0o077 != 0 {
			t.Errorf("%s has mode %v; the state is private", p, perm)
		}
	}
	// The atomic write leaves no temporary file behind.
	entries, _ := os.ReadDir(s.WorkspaceDir(id))
	if len(entries) != 1 || entries[0].Name() != "workspace.json" {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("workspace directory holds %q, want only workspace.json", names)
	}
}

func TestCreateConflict(t *testing.T) {
	s := newStore(t)
	id := NewID()
	if err := s.Create(sampleRecord(id), id); err != nil {
		t.Fatal(err)
	}
	other := sampleRecord(id)
	other.Name = "other"
	err := s.Create(other, id)
	if errs.KindOf(err) != errs.Conflict {
		t.Fatalf("second Create = %v (kind %s), want Conflict", err, errs.KindOf(err))
	}
	var got Record
	if err := s.Read(id, &got); err != nil || got.Name != "my-ws" {
		t.Errorf("the first record was changed: %+v, %v", got, err)
	}
}

func TestReadMissing(t *testing.T) {
	s := newStore(t)
	var r Record
	err := s.Read(NewID(), &r)
	if errs.KindOf(err) != errs.NotFound {
		t.Fatalf("Read of a missing workspace = %v (kind %s), want NotFound", err, errs.KindOf(err))
	}
	if errs.HintOf(err) == "" {
		t.Errorf("NotFound without a hint")
	}
}

func TestReadDamaged(t *testing.T) {
	s := newStore(t)
	id := NewID()
	if err := os.MkdirAll(s.WorkspaceDir(id), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Path(id, "workspace.json"), []byte(`{"workspace_id": "`+id+`", "na`), 0o600); err != nil {
		t.Fatal(err)
	}
	var r Record
	err := s.Read(id, &r)
	if errs.KindOf(err) != errs.Internal {
		t.Fatalf("Read of a damaged record = %v (kind %s), want Internal", err, errs.KindOf(err))
	}
	var e *errs.Error
	if !errors.As(err, &e) {
		t.Fatalf("Read of a damaged record = %T, want a classified error", err)
	}
	if hint := errs.HintOf(err); !strings.Contains(hint, "pyro workspace delete "+id) {
		t.Errorf("hint = %q, want it to say how to delete %s", hint, id)
	}
	if !strings.Contains(err.Error(), id) {
		t.Errorf("error %q does not name the workspace", err)
	}
}

func TestIDs(t *testing.T) {
	s := newStore(t)
	if ids, err := s.IDs(); err != nil || len(ids) != 0 {
		t.Fatalf("IDs of a new state directory = %q, %v; want none", ids, err)
	}
	a, b := "ws-00000000000000aa", "ws-00000000000000bb"
	for _, id := range []string{b, a} {
		if err := s.Create(sampleRecord(id), id); err != nil {
			t.Fatal(err)
		}
	}
	ws := filepath.Join(s.Dir, "workspaces")
	// Things that are not workspaces.
	noRecord := "ws-00000000000000cc" // a create that crashed before its record
	for _, d := range []string{noRecord, ".deleting-ws-00000000000000dd-1", "not-an-id", "ws-00000000000000AA"} {
		if err := os.MkdirAll(filepath.Join(ws, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(ws, "ws-00000000000000ee"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ws, "not-an-id", "workspace.json"), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	ids, err := s.IDs()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ids, []string{a, b}) {
		t.Errorf("IDs = %q, want %q", ids, []string{a, b})
	}
}

func TestLock(t *testing.T) {
	s := newStore(t)
	id := NewID()
	if err := s.Create(sampleRecord(id), id); err != nil {
		t.Fatal(err)
	}
	first, err := s.Lock(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}

	// While it is held, a second Lock waits until its context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	l, err := s.Lock(ctx, id)
	if err == nil {
		l.Unlock()
		t.Fatalf("a second Lock succeeded while the first is held")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second Lock = %v, want the context's error", err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("second Lock gave up after %v, before its context ended", d)
	}

	// A cancelled context returns promptly.
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if l, err := s.Lock(ctx, id); !errors.Is(err, context.Canceled) {
		l.Unlock()
		t.Errorf("Lock with a cancelled context = %v, want context.Canceled", err)
	}

	// A waiter gets the lock once it is released.
	got := make(chan error, 1)
	go func() {
		l, err := s.Lock(context.Background(), id)
		if err == nil {
			l.Unlock()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("a waiter got the lock while it was held (%v)", err)
	case <-time.After(100 * time.Millisecond):
	}
	if err := first.Unlock(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("waiter: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the waiter did not get the released lock")
	}
}

func TestLockMissingWorkspace(t *testing.T) {
	s := newStore(t)
	_, err := s.Lock(context.Background(), NewID())
	if errs.KindOf(err) != errs.NotFound {
		t.Errorf("Lock of a missing workspace = %v (kind %s), want NotFound", err, errs.KindOf(err))
	}
}

func TestRemove(t *testing.T) {
	s := newStore(t)
	id, keep := NewID(), NewID()
	for _, i := range []string{id, keep} {
		if err := s.Create(sampleRecord(i), i); err != nil {
			t.Fatal(err)
		}
	}
	// Content below, including a read-only directory.
	ro := filepath.Join(s.WorkspaceDir(id), "ro")
	if err := os.MkdirAll(filepath.Join(ro, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(ro, "sub", "f"), []byte("x"), 0o400)
	os.Chmod(ro, 0o500)

	if err := s.Remove(id); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(s.WorkspaceDir(id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("workspace directory still there: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(s.Dir, "workspaces"))
	if len(entries) != 1 || entries[0].Name() != keep {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("workspaces/ holds %q after Remove, want only %s (no hidden leftover)", names, keep)
	}
	if ids, _ := s.IDs(); !reflect.DeepEqual(ids, []string{keep}) {
		t.Errorf("IDs after Remove = %q, want %q", ids, []string{keep})
	}
	// Removing what is gone is fine.
	if err := s.Remove(id); err != nil {
		t.Errorf("second Remove = %v, want nil", err)
	}
}

// An interrupted delete leaves a hidden directory: it never lists, and
// CleanLeftovers removes it and nothing else.
func TestCleanLeftovers(t *testing.T) {
	s := newStore(t)
	s.CleanLeftovers() // no state directory yet: nothing to do
	id := NewID()
	if err := s.Create(sampleRecord(id), id); err != nil {
		t.Fatal(err)
	}
	ws := filepath.Join(s.Dir, "workspaces")
	left := filepath.Join(ws, ".deleting-ws-0123456789abcdef-1700000000000000000")
	if err := os.MkdirAll(filepath.Join(left, "deep", "er"), 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(left, "workspace.json"), []byte("{}"), 0o600)
	os.WriteFile(filepath.Join(left, "deep", "er", "disk.ext4"), []byte("data"), 0o600)
	other := filepath.Join(ws, ".other")
	if err := os.Mkdir(other, 0o700); err != nil {
		t.Fatal(err)
	}
	if ids, _ := s.IDs(); !reflect.DeepEqual(ids, []string{id}) {
		t.Errorf("IDs with a half-deleted workspace = %q, want %q", ids, []string{id})
	}

	s.CleanLeftovers()

	if _, err := os.Lstat(left); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leftover %s still there: %v", left, err)
	}
	for _, p := range []string{other, s.Path(id, "workspace.json")} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("CleanLeftovers removed %s: %v", p, err)
		}
	}
}

func TestSocketPath(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "")
	// A long $TMPDIR must not matter either.
	t.Setenv("TMPDIR", filepath.Join(t.TempDir(), strings.Repeat("t", 120)))
	tmpBase = t.TempDir()
	defer func() { tmpBase = "/tmp" }()
	short := &Store{Dir: t.TempDir()}
	long := &Store{Dir: filepath.Join(t.TempDir(), strings.Repeat("d", 200), strings.Repeat("e", 200))}
	longRuntime := filepath.Join(t.TempDir(), strings.Repeat("r", 150))
	id, other := NewID(), NewID()

	for _, tc := range []struct {
		name    string
		s       *Store
		runtime string
	}{
		{"short state dir", short, ""},
		{"long state dir", long, ""},
		{"runtime dir", short, t.TempDir()},
		{"long runtime dir", short, longRuntime},
		{"long runtime and state dirs", long, longRuntime},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("XDG_RUNTIME_DIR", tc.runtime)
			p := tc.s.SocketPath(id)
			if len(p) >= 108 {
				t.Fatalf("SocketPath = %q (%d bytes); a unix socket path must be under 108", p, len(p))
			}
			if !filepath.IsAbs(p) || !strings.HasSuffix(p, ".sock") {
				t.Errorf("SocketPath = %q, want an absolute .sock path", p)
			}
			if tc.runtime != "" && len(tc.runtime) < 80 && !strings.HasPrefix(p, tc.runtime+"/") {
				t.Errorf("SocketPath = %q, want it under XDG_RUNTIME_DIR %s", p, tc.runtime)
			}
			if p2 := tc.s.SocketPath(id); p2 != p {
				t.Errorf("SocketPath is not stable: %q, then %q", p, p2)
			}
			if q := tc.s.SocketPath(other); q == p {
				t.Errorf("two workspaces share the socket path %q", p)
			}
			// It can really be bound.
			if err := PrepareSocketDir(p); err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("unix", p)
			if err != nil {
				t.Fatalf("binding %s: %v", p, err)
			}
			ln.Close()
			os.Remove(p)
		})
	}
	// The same id in two state directories gets two sockets.
	if short.SocketPath(id) == long.SocketPath(id) {
		t.Errorf("two state directories share the socket path %q", short.SocketPath(id))
	}
}

func TestPrepareSocketDirRefusesForeignTmpDir(t *testing.T) {
	tmpBase = t.TempDir()
	defer func() { tmpBase = "/tmp" }()
	sock := filepath.Join(privateTmpDir(), "x.sock")
	// Made first by someone else, or open to others: refused.
	if err := os.Mkdir(privateTmpDir(), 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(privateTmpDir(), 0o777)
	if err := PrepareSocketDir(sock); err == nil || !strings.Contains(err.Error(), "not a private directory") {
		t.Fatalf("a world-writable %s was accepted: %v", privateTmpDir(), err)
	}
	os.Remove(privateTmpDir())
	if err := os.Symlink(t.TempDir(), privateTmpDir()); err != nil {
		t.Fatal(err)
	}
	if err := PrepareSocketDir(sock); err == nil {
		t.Fatal("a symlink in place of the private directory was accepted")
	}
	os.Remove(privateTmpDir())
	if err := PrepareSocketDir(sock); err != nil {
		t.Fatalf("a fresh private directory: %v", err)
	}
}

func TestNameRE(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"my-workspace", true},
		{"My_WS.2", true},
		{"0lead-digit", true},
		{strings.Repeat("x", 64), true},
		{strings.Repeat("x", 65), false},
		{"", false},
		{"-lead-dash", false},
		{".hidden", false},
		{"_lead", false},
		{"has space", false},
		{"slash/name", false},
		{"..", false},
		{"new\nline", false},
		{"name\n", false},
		{"ünïcode", false},
	} {
		if got := NameRE.MatchString(tc.name); got != tc.ok {
			t.Errorf("NameRE.MatchString(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

func TestIsID(t *testing.T) {
	for _, tc := range []struct {
		s  string
		ok bool
	}{
		{"ws-0123456789abcdef", true},
		{"ws-0123456789ABCDEF", false},
		{"ws-0123456789abcde", false},
		{"ws-0123456789abcdef0", false},
		{"ws-0123456789abcdeg", false},
		{"xs-0123456789abcdef", false},
		{"0123456789abcdef", false},
		{"ws-0123456789abcdef\n", false},
		{"../ws-0123456789abcdef", false},
		{"", false},
	} {
		if got := IsID(tc.s); got != tc.ok {
			t.Errorf("IsID(%q) = %v, want %v", tc.s, got, tc.ok)
		}
	}
	seen := map[string]bool{}
	for range 100 {
		id := NewID()
		if !IsID(id) {
			t.Fatalf("NewID() = %q, which IsID refuses", id)
		}
		if seen[id] {
			t.Fatalf("NewID() repeated %q", id)
		}
		seen[id] = true
	}
}
