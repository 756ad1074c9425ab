package pyro

import (
	"context"
	"time"

	"github.com/pyro-sandbox/pyro/internal/env"
	"github.com/pyro-sandbox/pyro/internal/errs"
)

func (c *Client) runHostCompat(ctx context.Context, m *env.Manifest, req RunRequest, res *RunResult, start time.Time) (*RunResult, error) {
	return nil, errs.New(errs.Unavailable, "", "host-compat mode is not built yet")
}
