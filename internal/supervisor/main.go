package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/pyro-sandbox/pyro/internal/agentproto"
	"github.com/pyro-sandbox/pyro/internal/env"
	"github.com/pyro-sandbox/pyro/internal/errs"
	"github.com/pyro-sandbox/pyro/internal/guestbin"
	"github.com/pyro-sandbox/pyro/internal/host"
	"github.com/pyro-sandbox/pyro/internal/store"
	"github.com/pyro-sandbox/pyro/internal/vm"
	"github.com/pyro-sandbox/pyro/internal/vmm"
	"github.com/pyro-sandbox/pyro/internal/vmm/hostcompat"
	"github.com/pyro-sandbox/pyro/internal/vmm/qemu"
)

// Command is the hidden pyro subcommand that runs a supervisor.
const Command = "__supervise"

// DiskFile is the name of a workspace's writable layer.
const DiskFile = "disk.ext4"

// readyFD is the pipe on which the supervisor reports that its VM is up,
// or why it is not.
const readyFD = 3

// Ready is what the supervisor reports on the ready pipe.
type Ready struct {
	OK          bool                  `json:"ok"`
	Error       *ReadyError           `json:"error,omitempty"`
	Accelerator string                `json:"accelerator,omitempty"`
	BootMs      int64                 `json:"boot_ms,omitempty"`
	GuestBoot   []agentproto.BootStep `json:"guest_boot,omitempty"`
}

// ReadyError carries a boot failure with its kind and hint.
type ReadyError struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
	Hint    string `json:"hint"`
}

// Main runs a supervisor: pyro __supervise -state DIR -cache DIR -id ID
// -accel tcg|kvm -agent PATH. It returns the process's exit code.
func Main(args []string) int {
	fs := flag.NewFlagSet(Command, flag.ContinueOnError)
	stateDir := fs.String("state", "", "state directory")
	cacheDir := fs.String("cache", "", "environment cache")
	id := fs.String("id", "", "workspace id")
	accel := fs.String("accel", "tcg", "accelerator")
	agent := fs.String("agent", "", "the static pyro binary for the guest")
	bootTimeout := fs.Duration("boot-timeout", 90*time.Second, "boot deadline")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if detached, err := Daemonize(args); err != nil {
		fmt.Fprintf(os.Stderr, "supervisor %s: starting: %v\n", *id, err)
		return 1
	} else if !detached {
		return 0
	}
	logger := log.New(os.Stderr, fmt.Sprintf("supervisor %s: ", *id), log.LstdFlags|log.Lmicroseconds)
	ready := os.NewFile(readyFD, "ready")
	report := func(r Ready) {
		if ready != nil {
			json.NewEncoder(ready).Encode(r)
			ready.Close()
			ready = nil
		}
	}
	// Detached from any terminal: only SIGTERM (graceful) and SIGKILL end
	// it.
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)

	st := &store.Store{Dir: *stateDir}
	cache := &env.Cache{Dir: *cacheDir}
	self, _ := os.Executable()
	err := run(st, cache, *id, vmm.Accelerator(*accel), guestInit(cache, *agent, self, guestbin.Binary()), *bootTimeout, logger, report, term)
	if err != nil {
		logger.Printf("ended: %v", err)
		var e *errs.Error
		if !errors.As(err, &e) {
			e = errs.Wrap(errs.Internal, err, "", "supervisor")
		}
		report(Ready{Error: &ReadyError{Kind: string(e.Kind), Message: e.Error(), Hint: errs.HintOf(err)}})
		return 1
	}
	return 0
}

// guestInit returns the program the guest boots as init. A client that is
// not the pyro command (a Go program using the SDK) names the pyro binary
// itself; when that is self, the running binary, and self embeds a guest
// build (bin), the guest build boots instead, as it does for the pyro
// command.
func guestInit(cache *env.Cache, agent, self string, bin []byte) string {
	if bin == nil || self == "" {
		return agent
	}
	a, err1 := os.Stat(agent)
	b, err2 := os.Stat(self)
	if err1 != nil || err2 != nil || !os.SameFile(a, b) {
		return agent
	}
	if p, err := cache.GuestBuild(bin); err == nil {
		return p
	}
	return agent
}

func run(st *store.Store, cache *env.Cache, id string, accel vmm.Accelerator, agent string, bootTimeout time.Duration,
	logger *log.Logger, report func(Ready), term <-chan os.Signal) error {
	var rec store.Record
	if err := st.Read(id, &rec); err != nil {
		return err
	}
	// Bind the socket first: a client that finds the bootstrap file can
	// connect at once.
	sock := st.SocketPath(id)
	if err := store.PrepareSocketDir(sock); err != nil {
		return err
	}
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", sock, err)
	}
	defer os.Remove(sock)
	defer ln.Close()

	// Record this process at once, so a client can find (and, if it gives
	// up, kill) it while the VM boots; the VMM is added once it runs.
	boot := Bootstrap{PID: os.Getpid(), BootID: host.BootID(), Socket: sock, StartedAt: time.Now().UTC()}
	boot.StartTime, _ = processStartTime(boot.PID)
	if err := WriteBootstrap(st.Path(id, BootstrapFile), boot); err != nil {
		return err
	}
	defer os.Remove(st.Path(id, BootstrapFile))

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var backend vmm.Backend = &qemu.Backend{}
	if rec.ExecutionMode == store.ModeHostCompat {
		// The layer disk is attached to a loop device in the agent's
		// mount namespace instead of a VM's virtio-blk.
		self, _ := os.Executable()
		backend = &hostcompat.Backend{Agent: cache.HostAgent(agent, self), RootfsCache: filepath.Join(cache.Dir, "hostcompat")}
		accel = "" // nothing is accelerated or emulated
	}
	v, err := vm.Boot(ctx, vm.Options{
		ID:          id,
		Manifest:    &rec.Manifest,
		Cache:       cache,
		Agent:       agent,
		Backend:     backend,
		Accel:       accel,
		VCPUs:       rec.VCPUCount,
		MemMiB:      rec.MemMiB,
		BootTimeout: bootTimeout,
		TSCKHz:      host.TSCKHz(),
		ExtraDisks:  []vmm.Disk{{Path: st.Path(id, DiskFile)}},
		Upper:       "/dev/vdb",
	})
	if err != nil {
		return err
	}
	defer v.Kill()
	boot.VMMPID = v.Machine.PID()
	boot.VMMStart, _ = processStartTime(boot.VMMPID)
	if err := WriteBootstrap(st.Path(id, BootstrapFile), boot); err != nil {
		return err
	}

	srv := &server{st: st, id: id, vm: v, booted: time.Now(), logger: logger, stop: make(chan string, 1), lastActivity: time.Now()}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go srv.serveConn(conn)
		}
	}()
	steps := append(append([]agentproto.BootStep(nil), v.Hello.Boot...), agentproto.BootStep{Step: "ready", UptimeMs: v.Hello.UptimeMillis})
	report(Ready{OK: true, Accelerator: string(v.Accel), BootMs: v.Timings.Boot.Milliseconds(), GuestBoot: steps})
	logger.Printf("serving on %s (%s pid %d, accelerator %q)", sock, backend.Name(), v.Machine.PID(), v.Accel)

	ttl := time.NewTimer(time.Hour)
	defer ttl.Stop()
	resetTTL := func() {
		if rec.TTLSeconds > 0 {
			ttl.Reset(time.Until(srv.activity().Add(time.Duration(rec.TTLSeconds) * time.Second)))
		}
	}
	resetTTL()
	reason, deleteAfter := "", false
loop:
	for {
		select {
		case <-v.Machine.Done():
			reason = "the VM stopped"
			break loop
		case r := <-srv.stop:
			reason = r
			break loop
		case <-term:
			reason = "SIGTERM"
			break loop
		case <-ttl.C:
			if srv.activeOps.Load() == 0 && time.Since(srv.activity()) >= time.Duration(rec.TTLSeconds)*time.Second {
				reason, deleteAfter = "the TTL passed", true
				break loop
			}
			resetTTL()
		}
	}
	logger.Printf("stopping: %s", reason)
	ln.Close()
	if !srv.discard.Load() {
		// The guest flushes its disk and powers off.
		stopCtx, stopCancel := context.WithTimeout(context.Background(), 20*time.Second)
		v.Shutdown(stopCtx)
		stopCancel()
	}
	v.Kill()

	lock, err := st.Lock(context.Background(), id)
	if err != nil {
		return nil // deleted meanwhile
	}
	defer lock.Unlock()
	if deleteAfter {
		os.Remove(st.Path(id, BootstrapFile))
		return st.Remove(id)
	}
	if st.Read(id, &rec) == nil && rec.State == store.StateStarted {
		rec.State = store.StateStopped
		rec.LastActivity = srv.activity()
		if reason == "the VM stopped" {
			rec.LastError = "the VM stopped on its own: " + lastLine(v.Console.String())
		}
		st.Write(id, &rec)
	}
	return nil
}

func lastLine(s string) string {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			return s[i+1:]
		}
	}
	return s
}
