package kernel

import (
	"strings"
	"testing"
)

const sampleConfig = `#
# Automatically generated file; DO NOT EDIT.
# Linux/x86 6.1.192 Kernel Configuration
#
CONFIG_CC_VERSION_TEXT="gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0"
CONFIG_PVH=y
CONFIG_VIRTIO_BLK=m
# CONFIG_HZ_100 is not set
CONFIG_HZ_250=y
CONFIG_HZ=250

CONFIG_LOCALVERSION=""
`

func TestReadConfig(t *testing.T) {
	c, err := ReadConfig(strings.NewReader(sampleConfig))
	if err != nil {
		t.Fatal(err)
	}
	if c.HZ != 250 {
		t.Errorf("HZ = %d, want 250", c.HZ)
	}
	for _, tt := range []struct {
		name, value string
		ok          bool
	}{
		{"CONFIG_PVH", "y", true},
		{"CONFIG_VIRTIO_BLK", "m", true},
		{"CONFIG_CC_VERSION_TEXT", "gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0", true},
		{"CONFIG_LOCALVERSION", "", true},
		{"CONFIG_HZ_100", "", false},
		{"PVH", "", false},
	} {
		if value, ok := c.Lookup(tt.name); value != tt.value || ok != tt.ok {
			t.Errorf("Lookup(%q) = %q, %v; want %q, %v", tt.name, value, ok, tt.value, tt.ok)
		}
	}
}

func TestReadConfigErrors(t *testing.T) {
	for _, tt := range []struct{ name, config, wantErr string }{
		{"no HZ", "CONFIG_PVH=y\n", "no CONFIG_HZ"},
		{"bad HZ", "CONFIG_HZ=fast\n", `invalid CONFIG_HZ="fast"`},
		{"not an option", "CONFIG_HZ=250\nhello\n", "line 2"},
		{"bad string", "CONFIG_HZ=250\nCONFIG_X=\"unterminated\n", "CONFIG_X: bad string"},
		{"too large", strings.Repeat("# padding padding padding\n", maxConfigSize/20), "exceeds"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadConfig(strings.NewReader(tt.config))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
