package kernel

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// maxConfigSize bounds a config file; Debian's is about 120 KiB.
const maxConfigSize = 8 << 20

// Config holds the values of a kernel build configuration (boot/config-*).
type Config struct {
	// HZ is CONFIG_HZ, the timer tick rate the kernel was built with.
	HZ     int
	values map[string]string
}

// ReadConfig parses a kernel config file. Options marked "is not set" are
// absent; string values are unquoted.
func ReadConfig(r io.Reader) (*Config, error) {
	c := &Config{values: make(map[string]string)}
	lr := &io.LimitedReader{R: r, N: maxConfigSize + 1}
	sc := bufio.NewScanner(lr)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		name, value, ok := strings.Cut(text, "=")
		if !ok || !strings.HasPrefix(name, "CONFIG_") {
			return nil, fmt.Errorf("config line %d: not CONFIG_NAME=value: %q", line, text)
		}
		if strings.HasPrefix(value, `"`) {
			s, err := strconv.Unquote(value)
			if err != nil {
				return nil, fmt.Errorf("config line %d: %s: bad string: %w", line, name, err)
			}
			value = s
		}
		c.values[name] = value
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	if lr.N <= 0 {
		return nil, fmt.Errorf("config exceeds %d bytes", maxConfigSize)
	}
	hz, ok := c.values["CONFIG_HZ"]
	if !ok {
		return nil, errors.New("config has no CONFIG_HZ")
	}
	n, err := strconv.Atoi(hz)
	if err != nil || n <= 0 {
		return nil, fmt.Errorf("config has invalid CONFIG_HZ=%q", hz)
	}
	c.HZ = n
	return c, nil
}

// Lookup returns the value of an option by its full name, e.g. "CONFIG_PVH";
// ok is false when the option is not set.
func (c *Config) Lookup(name string) (value string, ok bool) {
	value, ok = c.values[name]
	return value, ok
}
