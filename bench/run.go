package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/pyro-sandbox/pyro/internal/env"
	"github.com/pyro-sandbox/pyro/internal/vm"
)

// runJSON is the part of `pyro run --json` the benchmark reads.
type runJSON struct {
	ExitCode    int    `json:"exit_code"`
	Accelerator string `json:"accelerator"`
	Timings     struct {
		PrepareMs  int64  `json:"prepare_ms"`
		VMMStartMs int64  `json:"vmm_start_ms"`
		BootMs     int64  `json:"boot_ms"`
		ExecMs     int64  `json:"exec_ms"`
		TeardownMs int64  `json:"teardown_ms"`
		BootSource string `json:"boot_source"`
		GuestBoot  []struct {
			Step     string `json:"step"`
			UptimeMs int64  `json:"uptime_ms"`
		} `json:"guest_boot"`
	} `json:"timings"`
}

// runPhases collects the phases of several runs.
type runPhases struct {
	whole, vmmStart, boot, exec, teardown []time.Duration
	steps                                 map[string][]time.Duration // the guest's boot steps, cold runs only
}

func (p *runPhases) add(whole time.Duration, res *runJSON) {
	p.whole = append(p.whole, whole)
	p.vmmStart = append(p.vmmStart, time.Duration(res.Timings.VMMStartMs)*time.Millisecond)
	p.boot = append(p.boot, time.Duration(res.Timings.BootMs-res.Timings.VMMStartMs)*time.Millisecond)
	p.exec = append(p.exec, time.Duration(res.Timings.ExecMs)*time.Millisecond)
	p.teardown = append(p.teardown, time.Duration(res.Timings.TeardownMs)*time.Millisecond)
	if p.steps == nil {
		p.steps = map[string][]time.Duration{}
	}
	var prev int64
	for _, st := range res.Timings.GuestBoot {
		p.steps[st.Step] = append(p.steps[st.Step], time.Duration(st.UptimeMs-prev)*time.Millisecond)
		prev = st.UptimeMs
	}
}

// ratioRows are a measure's ratio to the floor: of the medians, with its
// verdict when there is a target, and the median of each run ÷ the floor
// booted in the same round (a slow spell of this shared machine slows
// both, and the pair's ratio cancels it, where the ratio of the medians
// does not).
func ratioRows(name string, runs, floors []time.Duration, target float64) []row {
	ratio := float64(median(runs)) / float64(median(floors))
	pairs := make([]float64, len(runs))
	for i := range runs {
		pairs[i] = float64(runs[i]) / float64(floors[i])
	}
	r := row{name, fmt.Sprintf("%.2f", ratio), "", ""}
	if target > 0 {
		r.target = fmt.Sprintf("≤ %.1f under TCG", target)
		r.verdict = "met"
		if ratio > target {
			r.verdict = "NOT met"
		}
	}
	return []row{r, {"  the same as the median of each run ÷ the floor booted in the same round", fmt.Sprintf("%.2f", medianFloat(pairs)), "", ""}}
}

func (b *bench) measureRun() error {
	floor, err := newFloor(b.pyro)
	if err != nil {
		return err
	}
	defer floor.close()
	var floors []time.Duration
	var restored, cold runPhases
	// One warm-up of each, not counted: page cache, the KVM probe verdict,
	// and the template of the default size, made by the first run.
	if _, err := b.pyroRun(nil); err != nil {
		return err
	}
	floor.boot()
	// A boot is the shortest and noisiest figure here: twice the runs.
	// Each round boots the floor, a restored run and a cold run, in an
	// order that rotates: whatever the one before leaves behind (a VM's
	// memory being freed) falls on each in turn.
	measures := []func() error{
		func() error {
			d, err := floor.boot()
			floors = append(floors, d)
			return err
		},
		func() error { return b.timedRun(&restored, nil, "template") },
		func() error { return b.timedRun(&cold, []string{"PYRO_TEMPLATES=0"}, "cold") },
	}
	for i := 0; i < 2*b.runs; i++ {
		for j := range measures {
			if err := measures[(i+j)%len(measures)](); err != nil {
				return err
			}
		}
	}
	if b.accel == "" {
		b.accel = "tcg"
	}
	// The first run of an environment at a new size boots cold and makes
	// the template: a fresh memory size each time, removed afterwards.
	var firsts []time.Duration
	for i := range 3 {
		mem := strconv.Itoa(1024 - 8*(i+1))
		before := templateDirs()
		start := time.Now()
		if _, err := b.pyroRun(nil, "--mem-mib", mem); err != nil {
			return err
		}
		firsts = append(firsts, time.Since(start))
		for d := range templateDirs() {
			if !before[d] {
				os.RemoveAll(d)
				os.Remove(d + ".lock")
			}
		}
	}
	// Diagnostic boots, not timed: when the floor's kernel started its
	// init, to set beside the cold run's "init" step.
	var floorInit []time.Duration
	for range 5 {
		d, err := floor.initUptime()
		if err != nil {
			return err
		}
		floorInit = append(floorInit, d)
	}
	step := func(name string) string { return ms(median(cold.steps[name])) }
	b.rows = append(b.rows,
		row{"`pyro run debian:12 -- true`, whole command (the machine restored from its template: the default)", minMax(restored.whole), "", ""},
		row{"  VMM start and state load (QEMU, QMP, the template's device state)", ms(median(restored.vmmStart)), "", ""},
		row{"  then to the agent answering (its hello answered, a ping)", ms(median(restored.boot)), "", ""},
		row{"  exec of `true`", ms(median(restored.exec)), "", ""},
		row{"  teardown", ms(median(restored.teardown)), "", ""},
		row{"floor: same QEMU + kernel, init powers off at once", minMax(floors), "", ""},
	)
	b.rows = append(b.rows, ratioRows("run ÷ floor", restored.whole, floors, 1.3)...)
	b.rows = append(b.rows,
		row{"the same run booted cold (`PYRO_TEMPLATES=0`), whole command", minMax(cold.whole), "", ""},
		row{"  VMM start (process spawn)", ms(median(cold.vmmStart)), "", ""},
		row{"  boot to agent ready", ms(median(cold.boot)), "", ""},
		row{"  in the guest: kernel boot and init's Go start (uptime at init's first step)", step("init"), "", ""},
		row{"  in the guest: kernel modules", step("modules"), "", ""},
		row{"  in the guest: root filesystem (ext4 + overlay, mounts moved)", step("root"), "", ""},
		row{"  in the guest: agent ready (late mounts, lo, port, hello)", step("ready"), "", ""},
		row{"  exec of `true`", ms(median(cold.exec)), "", ""},
		row{"  teardown", ms(median(cold.teardown)), "", ""},
		row{"  floor, in the guest: kernel boot and init's Go start (uptime at init's first step; 5 more boots)", ms(median(floorInit)), "", ""},
	)
	b.rows = append(b.rows, ratioRows("cold run ÷ floor", cold.whole, floors, 0)...)
	b.rows = append(b.rows, row{"first run at a new size: cold boot, template made, then restored (3 runs)", minMax(firsts), "", ""})
	b.notes = append(b.notes,
		"A one-shot run restores its machine from a template: the first run of an environment at a given size (vCPUs, memory) boots it cold to agent-ready, with its RAM in a shared file, and saves its device state over QMP (x-ignore-shared leaves the RAM out, so the save takes milliseconds); each later run starts QEMU with that file mapped copy-on-write and the state loaded, answers the agent's hello with the host's clock and fresh entropy (which the agent credits and reseeds the kernel's generator with), and pings it. The kernel's boot, init's work and the cold page cache are skipped; what remains is QEMU's own start, the state load, and, under TCG, translating again the code each run executes. `run ÷ floor` is that default path; the cold path is shown beside it, since the first run at a new size pays it.",
		"Where a cold run's time goes under TCG (the guest's boot steps in the result's `timings.guest_boot`, as uptimes; the kernel's own log with `initcall_debug`; `GODEBUG=inittrace=1` on the guest's command line): the QEMU start and the kernel boot are the floor's too. On top of them: the kernel unpacks a larger initramfs (pyro's guest build, 2.8 MiB, and the modules, 1 MiB; the floor's is 1.2 MiB); Go's runtime and package initialisers run in the guest build; init loads six modules (virtio_ring, virtio, virtio_mmio, virtio_blk with the disk's probe, virtio_console with its ports, overlay), mounts the root, brings `lo` up and says hello; then the first command pays for a cold page cache and for QEMU translating code that has not run yet.",
		"`run` is the wall-clock time of the whole `pyro run --json debian:12 -- true` process; its phases come from the result's `timings`. The floor boots the environment's kernel with the same QEMU arguments pyro uses for a cold boot (machine, accelerator, kernel command line, devices) and a "+fmt.Sprintf("%d", floor.initrdKiB)+" KiB initramfs holding only a static init that powers off; it is timed from QEMU's start to its exit. Floor, restored run and cold run take turns, in an order that rotates each round, so each sees the same spells of this shared machine and follows each of the others as often.",
	)
	return nil
}

// templateDirs lists the template directories in the environment cache.
func templateDirs() map[string]bool {
	dirs := map[string]bool{}
	root := vm.TemplatesDir(env.DefaultCacheDir())
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if e.IsDir() {
			dirs[filepath.Join(root, e.Name())] = true
		}
	}
	return dirs
}

// timedRun times one `pyro run -- true` into p and checks how its machine
// came to be.
func (b *bench) timedRun(p *runPhases, extraEnv []string, wantSource string) error {
	start := time.Now()
	res, err := b.pyroRun(extraEnv)
	if err != nil {
		return err
	}
	p.add(time.Since(start), res)
	b.accel = res.Accelerator
	if res.Timings.BootSource != wantSource {
		return fmt.Errorf("a run meant to boot %s reported boot source %q", wantSource, res.Timings.BootSource)
	}
	return nil
}

func (b *bench) pyroRun(extraEnv []string, flags ...string) (*runJSON, error) {
	var stdout, stderr bytes.Buffer
	args := append([]string{"run", "debian:12", "--json"}, flags...)
	cmd := exec.Command(b.pyro, append(args, "--", "true")...)
	cmd.Env = append(os.Environ(), extraEnv...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("pyro run: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	var res runJSON
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return nil, err
	}
	return &res, nil
}
