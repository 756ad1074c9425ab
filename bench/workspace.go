package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pyro-sandbox/pyro/internal/agentproto"
	"github.com/pyro-sandbox/pyro/internal/store"
	"github.com/pyro-sandbox/pyro/internal/supervisor"
	"github.com/pyro-sandbox/pyro/pyro"
)

// measureWorkspace times the workspace operations against the agent
// channel's own round trip and throughput, measured in the same session.
func (b *bench) measureWorkspace() error {
	ctx := context.Background()
	state, err := os.MkdirTemp("", "pyro-bench-state-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(state)
	c := pyro.New(pyro.Options{StateDir: state, AgentBinary: b.pyro})
	// A seed of 10,000 small files, for create and diff.
	seedDir, err := os.MkdirTemp("", "pyro-bench-seed-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(seedDir)
	for i := 0; i < 10000; i++ {
		d := filepath.Join(seedDir, fmt.Sprintf("d%02d", i%100))
		os.MkdirAll(d, 0o755)
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%05d.txt", i)), []byte(fmt.Sprintf("line one of %d\nline two\n", i)), 0o644); err != nil {
			return err
		}
	}
	var creates, resets []time.Duration
	start := time.Now()
	ws, err := c.CreateWorkspace(ctx, pyro.WorkspaceCreateRequest{Environment: "debian:12", SeedPath: seedDir, Name: "bench"})
	if err != nil {
		return err
	}
	creates = append(creates, time.Since(start))
	defer c.DeleteWorkspace(ctx, pyro.DeleteRequest{Workspace: ws.WorkspaceID, Force: true})
	for i := 1; i < 3; i++ {
		start = time.Now()
		w, err := c.CreateWorkspace(ctx, pyro.WorkspaceCreateRequest{Environment: "debian:12", SeedPath: seedDir})
		if err != nil {
			return err
		}
		creates = append(creates, time.Since(start))
		c.DeleteWorkspace(ctx, pyro.DeleteRequest{Workspace: w.WorkspaceID, Force: true})
	}

	st := &store.Store{Dir: state}
	boot, _, err := supervisor.ReadBootstrap(st.Path(ws.WorkspaceID, supervisor.BootstrapFile))
	if err != nil {
		return err
	}
	sess, err := supervisor.Dial(ctx, boot.Socket)
	if err != nil {
		return err
	}
	defer sess.Close()

	// Round trips: an agent ping through the supervisor, exec of true
	// through the SDK and through the CLI, interleaved.
	var pings, sdkExec, cliExec []time.Duration
	for i := 0; i < b.runs*2; i++ {
		start = time.Now()
		if err := supervisor.Call(ctx, sess, agentproto.OpPing, struct{}{}, nil); err != nil {
			return err
		}
		pings = append(pings, time.Since(start))
		start = time.Now()
		if _, err := c.ExecWorkspace(ctx, pyro.WorkspaceExecRequest{Workspace: "bench", Command: []string{"true"}}); err != nil {
			return err
		}
		sdkExec = append(sdkExec, time.Since(start))
		start = time.Now()
		cmd := exec.Command(b.pyro, "workspace", "exec", "bench", "--", "true")
		cmd.Env = append(os.Environ(), "PYRO_HOME="+state)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("cli exec: %v\n%s", err, out)
		}
		cliExec = append(cliExec, time.Since(start))
	}
	ping := median(pings)
	b.rows = append(b.rows,
		row{"agent ping round trip (client → supervisor → agent)", minMax(pings), "", ""},
		row{"`workspace exec -- true` through the SDK", minMax(sdkExec), "", ""},
		row{"`pyro workspace exec WS -- true` (whole CLI command)", minMax(cliExec), "", ""},
		row{"SDK exec ÷ ping", fmt.Sprintf("%.1f", float64(median(sdkExec))/float64(ping)), "≤ 3", verdict(float64(median(sdkExec))/float64(ping) <= 3)},
		row{"CLI exec ÷ ping", fmt.Sprintf("%.1f", float64(median(cliExec))/float64(ping)), "≤ 3", verdict(float64(median(cliExec))/float64(ping) <= 3)},
	)

	// Throughput: 100 MiB through the bare channel, then as files.
	const size = 100 << 20
	big, err := os.MkdirTemp("", "pyro-bench-big-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(big)
	for i := 0; i < 100; i++ {
		f, _ := os.Create(filepath.Join(big, fmt.Sprintf("blob%03d", i)))
		w := bufio.NewWriter(f)
		for j := 0; j < 1<<20; j += 16 {
			w.WriteString("0123456789abcdef")
		}
		w.Flush()
		f.Close()
	}
	var sinks, sources, pushes, exports []time.Duration
	for i := 0; i < 3; i++ {
		start = time.Now()
		if err := sink(ctx, sess, size); err != nil {
			return err
		}
		sinks = append(sinks, time.Since(start))
		start = time.Now()
		if err := source(ctx, sess, size); err != nil {
			return err
		}
		sources = append(sources, time.Since(start))
		start = time.Now()
		if _, err := c.SyncPush(ctx, pyro.SyncPushRequest{Workspace: "bench", SourcePath: big, Dest: "big"}); err != nil {
			return err
		}
		pushes = append(pushes, time.Since(start))
		out := filepath.Join(big, "..", fmt.Sprintf("pyro-bench-export-%d", i))
		os.RemoveAll(out)
		start = time.Now()
		if _, err := c.ExportWorkspace(ctx, pyro.ExportRequest{Workspace: "bench", Path: "big", OutputPath: out}); err != nil {
			return err
		}
		exports = append(exports, time.Since(start))
		os.RemoveAll(out)
	}
	rate := func(d time.Duration) string { return fmt.Sprintf("%.0f MiB/s", float64(size)/(1<<20)/d.Seconds()) }
	pushRatio := float64(median(sinks)) / float64(median(pushes))
	exportRatio := float64(median(sources)) / float64(median(exports))
	b.rows = append(b.rows,
		row{"100 MiB through the channel, host → guest (discarded)", rate(median(sinks)), "", ""},
		row{"`sync push` of a 100 MiB tree (100 files)", rate(median(pushes)), "", ""},
		row{"sync push ÷ channel", fmt.Sprintf("%.2f", pushRatio), "≥ 0.5", verdict(pushRatio >= 0.5)},
		row{"100 MiB through the channel, guest → host (discarded)", rate(median(sources)), "", ""},
		row{"`export` of the same tree", rate(median(exports)), "", ""},
		row{"export ÷ channel", fmt.Sprintf("%.2f", exportRatio), "≥ 0.5", verdict(exportRatio >= 0.5)},
	)

	// Diff of the 10,000-file tree with 10 files changed.
	c.ExecWorkspace(ctx, pyro.WorkspaceExecRequest{Workspace: "bench", Command: []string{"rm", "-rf", "big"}})
	if _, err := c.ExecWorkspace(ctx, pyro.WorkspaceExecRequest{Workspace: "bench", Command: []string{"sh", "-c", "for i in 0 1 2 3 4 5 6 7 8 9; do echo changed >> d0$i/f0000$i.txt; done"}}); err != nil {
		return err
	}
	var diffs []time.Duration
	for i := 0; i < 3; i++ {
		start = time.Now()
		d, err := c.DiffWorkspace(ctx, "bench")
		if err != nil {
			return err
		}
		if d.Summary.Modified != 10 {
			return fmt.Errorf("diff found %d modified files, want 10", d.Summary.Modified)
		}
		diffs = append(diffs, time.Since(start))
	}
	for i := 0; i < 2; i++ {
		start = time.Now()
		if _, err := c.ResetWorkspace(ctx, pyro.ResetRequest{Workspace: "bench"}); err != nil {
			return err
		}
		resets = append(resets, time.Since(start))
	}
	b.rows = append(b.rows,
		row{"`diff` of a 10,000-file tree with 10 files changed", minMax(diffs), "", ""},
		row{"`workspace create` seeded with the 10,000 files (boot included)", minMax(creates), "", ""},
		row{"`workspace reset` of it (new disk, boot, restore)", minMax(resets), "", ""},
	)

	// Host memory of the idle workspace beyond its guest RAM.
	time.Sleep(2 * time.Second)
	boot, _, _ = supervisor.ReadBootstrap(st.Path(ws.WorkspaceID, supervisor.BootstrapFile))
	supRSS := rssKiB(boot.PID)
	supPrivate := qemuMemory(boot.PID, 1<<40).anon
	qemuRSS := rssKiB(boot.VMMPID)
	m := qemuMemory(boot.VMMPID, 1024<<10)
	over := (supPrivate + m.anon - m.guestRAM) >> 10
	b.rows = append(b.rows,
		row{"idle workspace: supervisor RSS", fmt.Sprintf("%d MiB (private %d MiB; the rest is pyro's code, shared)", supRSS>>10, supPrivate>>10), "", ""},
		row{"idle workspace: QEMU RSS", fmt.Sprintf("%d MiB: guest RAM %d, TCG code cache %d, other private %d, shared files %d", qemuRSS>>10,
			m.guestRAM>>10, m.codeCache>>10, (m.anon-m.guestRAM-m.codeCache)>>10, (qemuRSS-m.anon)>>10), "", ""},
		row{"host memory beyond guest RAM (supervisor's and QEMU's private memory − guest RAM)", fmt.Sprintf("%d MiB (of which TCG code cache %d MiB)", over, m.codeCache>>10), "≤ 40 MiB", verdict(over <= 40)},
		row{"  the same without the TCG code cache (what KVM hosts pay)", fmt.Sprintf("%d MiB", over-m.codeCache>>10), "≤ 40 MiB", verdict(over-m.codeCache>>10 <= 40)},
	)
	b.notes = append(b.notes, "Workspace figures use the SDK in the benchmark process against a real workspace (its supervisor, its VM); the CLI figures are whole `pyro` processes. The ping is an agent operation that answers at once, relayed by the supervisor like every other; the channel figures stream 100 MiB through the same path to an agent operation that discards it or generates it. Memory is read from /proc/PID/smaps: a workspace's own cost is the private (anonymous) memory of its supervisor and its QEMU, less the guest RAM the guest touched; file pages (pyro's and QEMU's code, the kernel and initramfs files) are shared with every other workspace and the page cache, and are shown apart. Under TCG, QEMU's translation cache is private memory too.")
	return nil
}

func sink(ctx context.Context, sess *agentproto.Session, n int64) error {
	st, err := sess.Open(ctx, agentproto.OpSink, struct{}{})
	if err != nil {
		return err
	}
	defer st.Close()
	buf := make([]byte, 256<<10)
	for sent := int64(0); sent < n; sent += int64(len(buf)) {
		if _, err := st.SendData(ctx, agentproto.ChannelStdin, buf); err != nil {
			return err
		}
	}
	st.CloseSend()
	return supervisor.RecvResult(ctx, st, nil)
}

func source(ctx context.Context, sess *agentproto.Session, n int64) error {
	st, err := sess.Open(ctx, agentproto.OpSource, agentproto.SourceRequest{Bytes: n})
	if err != nil {
		return err
	}
	defer st.Close()
	st.CloseSend()
	return supervisor.RecvOutput(ctx, st, nil, func([]byte) error { return nil })
}

func rssKiB(pid int) int64 {
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}

type qemuMem struct{ anon, guestRAM, codeCache int64 }

// qemuMemory reads QEMU's smaps: its anonymous (private) memory, the
// resident part of the guest-RAM mapping (read-write, the guest's size)
// and of TCG's code cache (the executable anonymous mapping).
func qemuMemory(pid int, sizeKiB int64) qemuMem {
	var m qemuMem
	data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	var perms string
	var size int64
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			perms, size = f[1], 0
			continue
		}
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "Size:":
			size = n
		case "Anonymous:":
			m.anon += n
			switch {
			case strings.Contains(perms, "x"):
				m.codeCache += n
			case size >= sizeKiB && size <= sizeKiB+8192 && strings.HasPrefix(perms, "rw"):
				m.guestRAM += n
			}
		}
	}
	return m
}
