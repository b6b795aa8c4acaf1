package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/maps"
)

// synProxyStatus is what status shows of the SYN proxy: its counters, the
// auto ports engaged now, and the namespace settings it depends on.
type synProxyStatus struct {
	CookiesSent   uint64            `json:"cookies_sent"`
	ACKsValid     uint64            `json:"acks_valid"`
	ACKsInvalid   uint64            `json:"acks_invalid"`
	NotAnswered   map[string]uint64 `json:"syns_not_answered"`
	ProvenSYNs    uint64            `json:"proven_syns"`
	Engagements   uint64            `json:"auto_engagements"`
	Engaged       []uint16          `json:"engaged_ports"`
	Syncookies    *int              `json:"tcp_syncookies,omitempty"`
	Timestamps    *int              `json:"tcp_timestamps,omitempty"`
	DegradedNotes []string          `json:"degraded,omitempty"`
}

func synProxyStatusOf(sp *maps.SynProxy) *synProxyStatus {
	if sp == nil {
		return nil
	}
	c := sp.Counters
	s := &synProxyStatus{
		CookiesSent: c[datapath.SynProxyCookiesSent], ACKsValid: c[datapath.SynProxyACKsValid], ACKsInvalid: c[datapath.SynProxyACKsInvalid],
		ProvenSYNs: c[datapath.SynProxyProvenSYNs], Engagements: c[datapath.SynProxyAutoEngaged], Engaged: append([]uint16{}, sp.Engaged...),
		NotAnswered: map[string]uint64{
			"over_budget_source": c[datapath.SynProxyOverBudgetSrc], "over_budget_total": c[datapath.SynProxyOverBudgetTotal],
			"no_listener": c[datapath.SynProxyNoListener], "cookie_failed": c[datapath.SynProxyCookieFailed],
			"fragment": c[datapath.SynProxyFragment], "tx_failed": c[datapath.SynProxyTxFailed],
		},
	}
	if h, err := datapath.ReadSynProxyHost(""); err == nil {
		s.Syncookies, s.Timestamps = &h.Syncookies, &h.Timestamps
		s.DegradedNotes = h.Degraded()
	}
	return s
}

// active: anything to show (the maps exist in every program; a policy
// without syn_proxy leaves them at zero).
func (s *synProxyStatus) active() bool {
	if s == nil {
		return false
	}
	n := s.CookiesSent + s.ACKsValid + s.ACKsInvalid + s.Engagements
	for _, v := range s.NotAnswered {
		n += v
	}
	return n > 0 || len(s.Engaged) > 0
}

func printSynProxyStatus(tw io.Writer, s *synProxyStatus) {
	if !s.active() {
		return
	}
	engaged := "none"
	if len(s.Engaged) > 0 {
		engaged = strings.Trim(fmt.Sprint(s.Engaged), "[]")
	}
	fmt.Fprintf(tw, "syn proxy\t%d cookies sent, ACKs %d valid / %d invalid, %d SYNs of proven sources; auto engaged on: %s (%d engagements)\n",
		s.CookiesSent, s.ACKsValid, s.ACKsInvalid, s.ProvenSYNs, engaged, s.Engagements)
	fmt.Fprintf(tw, "  not answered\tover budget %d per source / %d total, no listener %d, no cookie %d, fragment %d, tx failed %d\n",
		s.NotAnswered["over_budget_source"], s.NotAnswered["over_budget_total"], s.NotAnswered["no_listener"],
		s.NotAnswered["cookie_failed"], s.NotAnswered["fragment"], s.NotAnswered["tx_failed"])
	if s.Syncookies != nil {
		fmt.Fprintf(tw, "  namespace\tnet.ipv4.tcp_syncookies=%d net.ipv4.tcp_timestamps=%d\n", *s.Syncookies, *s.Timestamps)
	}
	for _, d := range s.DegradedNotes {
		fmt.Fprintf(tw, "  degraded\t%s\n", d)
	}
}
