package qemu

import (
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
