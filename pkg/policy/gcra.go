package policy

// GCRA parameters as the data path uses them: one SYN costs IntervalNs of
// budget and a bucket may run LimitNs ahead of the clock, i.e. burst SYNs.
// IntervalNs 0 means the limiter is off.
type GCRA struct {
	IntervalNs uint64
	LimitNs    uint64
}

// GCRA converts a limit; nil converts to the disabled limiter. Validation
// bounds rate and burst, so the products cannot overflow (1e9 * 1e9 < 2^63).
func (l *Limit) GCRA() GCRA {
	if l == nil {
		return GCRA{}
	}
	interval := (1_000_000_000 + l.Rate/2) / l.Rate
	return GCRA{IntervalNs: interval, LimitNs: interval * l.Burst}
}
