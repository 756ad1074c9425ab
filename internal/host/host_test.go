package host

import (
	"os"
	"path/filepath"
	"testing"
)

func TestTSCKHzFromCPUInfo(t *testing.T) {
	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, tc := range []struct {
		name    string
		cpuinfo string
		want    int64
	}{
		// A VM whose hypervisor announces the TSC rate: "cpu MHz" is it,
		// taken from the first processor only.
		{"vm with tsc_known_freq", read("cpuinfo-vm-amd.txt"), 2096046},
		// Intel bare metal: the nominal rate in the model name is the
		// TSC's; "cpu MHz" is the current (turbo) clock.
		{"intel bare metal", read("cpuinfo-intel-metal.txt"), 2100000},
		{"intel model name with a rounding-prone rate", "model name\t: Intel(R) Core(TM) i7 CPU @ 4.10GHz\ncpu MHz\t\t: 800.000\n\n", 4100000},
		// AMD without either: "cpu MHz" of the first processor is all there is.
		{"amd bare metal", read("cpuinfo-amd-metal.txt"), 3399963},
		{"known freq wins over the model name", "model name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\ncpu MHz\t\t: 2199.998\nflags\t\t: fpu tsc tsc_known_freq\n\n", 2199998},
		{"tsc_known_freq as the last flag", "cpu MHz\t\t: 2400.012\nflags\t\t: fpu tsc_known_freq\n", 2400012},
		{"a flag that only starts like tsc_known_freq", "model name\t: X @ 3.00GHz\ncpu MHz\t\t: 1200.000\nflags\t\t: tsc_known_freq_x\n", 3000000},
		{"known freq without cpu MHz falls back to the model name", "model name\t: X @ 2.50GHz\nflags\t\t: tsc_known_freq\n", 2500000},
		{"empty", "", 0},
		{"no frequency at all", "processor\t: 0\nvendor_id\t: GenuineIntel\n\n", 0},
		{"garbage cpu MHz", "cpu MHz\t\t: fast\n", 0},
		{"zero GHz in the model name", "model name\t: X @ 0GHz\ncpu MHz\t\t: 1000.000\n", 1000000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tscKHzFromCPUInfo(tc.cpuinfo); got != tc.want {
				t.Errorf("tscKHzFromCPUInfo = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestKVMUsable(t *testing.T) {
	for _, tc := range []struct {
		k    KVM
		want bool
	}{
		{KVM{}, false},
		{KVM{Exists: true, Readable: true, Writable: true}, false},
		{KVM{Exists: true, Readable: true, CreateVM: true}, false},
		{KVM{Exists: true, Writable: true, CreateVM: true}, false},
		{KVM{Readable: true, Writable: true, CreateVM: true}, false},
		{KVM{Exists: true, Readable: true, Writable: true, CreateVM: true}, true},
		{KVM{Exists: true, Readable: true, Writable: true, CreateVM: true, Nested: "pvm"}, true},
	} {
		if got := tc.k.Usable(); got != tc.want {
			t.Errorf("%+v.Usable() = %v, want %v", tc.k, got, tc.want)
		}
	}
}
