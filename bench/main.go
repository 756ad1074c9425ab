// Command bench measures pyro against baselines taken in the same run, and
// writes the results to docs/benchmarks.md. These machines are noisy, so
// every figure is a median of several interleaved runs and every target is
// a ratio against a baseline measured alongside it.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"time"
)

func main() {
	binary := flag.String("binary", "bin/pyro", "the pyro binary to measure")
	out := flag.String("out", "docs/benchmarks.md", "where to write the results")
	runs := flag.Int("runs", 7, "runs per measurement")
	only := flag.String("only", "run,pull,workspace", "comma-separated sections to measure")
	flag.Parse()
	b := &bench{pyro: *binary, runs: *runs}
	sections := map[string]func() error{"run": b.measureRun, "pull": b.measurePull, "workspace": b.measureWorkspace}
	b.machine = machineDescription()
	for _, name := range []string{"run", "pull", "workspace"} {
		if !strings.Contains(","+*only+",", ","+name+",") {
			continue
		}
		b.rows = append(b.rows, row{"**" + name + "**", "", "", ""})
		if err := sections[name](); err != nil {
			fmt.Fprintf(os.Stderr, "bench %s: %v\n", name, err)
			os.Exit(1)
		}
	}
	report := b.report()
	fmt.Print(report)
	if err := os.WriteFile(*out, []byte(report), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type bench struct {
	pyro    string
	runs    int
	accel   string
	machine string
	rows    []row
	notes   []string
}

type row struct {
	name, value, target, verdict string
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func medianFloat(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

func minMax(d []time.Duration) string {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return fmt.Sprintf("%s / %s / %s", ms(s[0]), ms(median(s)), ms(s[len(s)-1]))
}

func machineDescription() string {
	model := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(strings.SplitN(string(data), "\n", 2)[0], "MemTotal: %d kB", &kb)
		mem = fmt.Sprintf("%.0f GiB RAM", float64(kb)/(1<<20))
	}
	kernel, _ := exec.Command("uname", "-r").Output()
	qemu, _ := exec.Command("qemu-system-x86_64", "--version").Output()
	q, _, _ := strings.Cut(string(qemu), "\n")
	return fmt.Sprintf("%s, %d cores, %s, host kernel %s, %s", model, runtime.NumCPU(), mem, strings.TrimSpace(string(kernel)), strings.TrimSpace(q))
}

func (b *bench) report() string {
	var s strings.Builder
	fmt.Fprintf(&s, "# Benchmarks\n\nWritten by `make bench` on %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&s, "- Machine: %s\n- Accelerator: %s\n- Method: every figure is the median of %d runs (min / median / max where shown); the measured\n  command and its baseline run interleaved in the same session, and targets are ratios against\n  that baseline, because these machines are noisy.\n\n", b.machine, b.accel, b.runs)
	s.WriteString("| Measure | Result | Target | |\n|---|---|---|---|\n")
	for _, r := range b.rows {
		fmt.Fprintf(&s, "| %s | %s | %s | %s |\n", r.name, r.value, r.target, r.verdict)
	}
	s.WriteString("\n")
	for _, n := range b.notes {
		s.WriteString(n + "\n\n")
	}
	return s.String()
}
