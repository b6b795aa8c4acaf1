package daemon

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/xdpguard/xdpguard/pkg/events"
)

// eventsLog is the drop event log of a running daemon: one reader per
// interface, writing to one file.
type eventsLog struct {
	w      *events.Writer
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func openEventsLog(path string) (*eventsLog, error) {
	w, err := events.OpenWriter(path)
	if err != nil {
		return nil, err
	}
	return &eventsLog{w: w}, nil
}

// reopen starts a new file after log rotation (on SIGHUP).
func (e *eventsLog) reopen(log *slog.Logger) {
	if e == nil {
		return
	}
	if err := e.w.Reopen(); err != nil {
		log.Error("reopen the events file", "err", err)
	}
}

// startEvents sets each interface's events budget (zero without an events
// log, so a previous daemon's setting does not linger) and starts a reader
// per interface.
func (d *daemon) startEvents(ctx context.Context, e *eventsLog) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	rate, burst := uint64(0), uint64(0)
	if e != nil {
		rate, burst = d.cfg.EventsRate, d.cfg.EventsBurst
		ctx, e.cancel = context.WithCancel(ctx)
	}
	for _, g := range d.guards {
		st, err := g.State()
		if err != nil {
			return err
		}
		if err := st.SetEventBudget(rate, burst); err != nil {
			return err
		}
		iface := g.Iface
		counter := d.events.Written.WithLabelValues(iface) // exported at 0 even with events off
		errs := d.events.WriteErrors.WithLabelValues(iface)
		if e == nil {
			continue
		}
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			var lastLogged time.Time
			failed := func(err error) {
				errs.Inc()
				if time.Since(lastLogged) > time.Minute { // a failing disk must not flood the log too
					d.log.Error("writing a drop event (it is lost; the log goes on)", "interface", iface, "err", err)
					lastLogged = time.Now()
				}
			}
			if err := events.Stream(ctx, iface, st, e.w, counter.Inc, failed); err != nil {
				d.log.Error("drop events stopped", "interface", iface, "err", err)
			}
		}()
	}
	return nil
}

// stopEvents turns the events off in the kernel and stops the readers.
func (d *daemon) stopEvents(e *eventsLog) {
	if e == nil {
		return
	}
	d.mu.RLock()
	for _, g := range d.guards {
		if st, err := g.State(); err == nil {
			_ = st.SetEventBudget(0, 0)
		}
	}
	d.mu.RUnlock()
	e.cancel()
	e.wg.Wait()
	_ = e.w.Close()
}
