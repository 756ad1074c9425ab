package qemu

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A read on pyro's end of a channel must end when pyro closes it: a guest
// that never speaks cannot hold a boot past its deadline.
func TestSocketPairHostEndReadEndsOnClose(t *testing.T) {
	host, vm, err := socketPair()
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	done := make(chan error, 1)
	go func() {
		_, err := host.Read(make([]byte, 1))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	host.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Error("the read returned no error")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a read blocked on pyro's end outlived its Close")
	}
}

// What QEMU writes to its stdout and stderr is kept for error messages.
func TestStartKeepsQEMUsOutput(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "qemu")
	script := "#!/bin/sh\necho 'qemu-system-x86_64: no such device' >&2\necho 'on stdout'\nexit 1\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	m, err := (&Backend{Path: fake}).Start(context.Background(), testSpec())
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.Done():
	case <-time.After(10 * time.Second):
		m.Kill()
		t.Fatal("the fake QEMU did not exit")
	}
	if m.Wait() == nil {
		t.Error("an exit status of 1 reads as success")
	}
	d := m.Diagnostics()
	if !strings.Contains(d, "no such device") || !strings.Contains(d, "on stdout") {
		t.Errorf("diagnostics %q lack what QEMU wrote", d)
	}
}
