package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdpguard/xdpguard/pkg/datapath"
	"github.com/xdpguard/xdpguard/pkg/maps"
)

// synProxyDescs are the SYN proxy's series (docs/synproxy.md).
type synProxyDescs struct {
	cookies, acks, notAnswered, proven, engagements, engaged *prometheus.Desc
}

func newSynProxyDescs(d func(name, help string, labels ...string) *prometheus.Desc) synProxyDescs {
	return synProxyDescs{
		cookies: d("synproxy_cookies_sent_total", "SYN-ACKs with a SYN cookie the data path answered with (XDP_TX) for syn_proxy ports.", "interface"),
		acks: d("synproxy_acks_total", "ACKs to syn_proxy ports that met only the listener: valid (a cookie the kernel's check accepts; passed, the listener makes the connection) "+
			"or invalid (dropped).", "interface", "result"),
		notAnswered: d("synproxy_syns_not_answered_total", "SYNs to syn_proxy ports not answered with a cookie, by why: over_budget_source, over_budget_total (dropped: the backscatter budget), "+
			"no_listener (passed to the kernel), cookie_failed, fragment, tx_failed (dropped).", "interface", "cause"),
		proven:      d("synproxy_proven_syns_total", "SYNs to syn_proxy ports from sources a cookie handshake proved: only these meet the per-source limits and bans there.", "interface"),
		engagements: d("synproxy_auto_engagements_total", "Times a syn_proxy: auto port started proxying (its SYN rate went over synproxy.auto_above).", "interface"),
		engaged:     d("synproxy_engaged", "1 for each syn_proxy: auto port proxying right now.", "interface", "port"),
	}
}

func (s synProxyDescs) all() []*prometheus.Desc {
	return []*prometheus.Desc{s.cookies, s.acks, s.notAnswered, s.proven, s.engagements, s.engaged}
}

func (s synProxyDescs) collect(sp *maps.SynProxy, iface string, counter func(*prometheus.Desc, uint64, ...string), gauge func(*prometheus.Desc, float64, ...string)) {
	if sp == nil {
		return
	}
	c := sp.Counters
	counter(s.cookies, c[datapath.SynProxyCookiesSent], iface)
	counter(s.acks, c[datapath.SynProxyACKsValid], iface, "valid")
	counter(s.acks, c[datapath.SynProxyACKsInvalid], iface, "invalid")
	for cause, i := range map[string]int{
		"over_budget_source": datapath.SynProxyOverBudgetSrc, "over_budget_total": datapath.SynProxyOverBudgetTotal,
		"no_listener": datapath.SynProxyNoListener, "cookie_failed": datapath.SynProxyCookieFailed,
		"fragment": datapath.SynProxyFragment, "tx_failed": datapath.SynProxyTxFailed,
	} {
		counter(s.notAnswered, c[i], iface, cause)
	}
	counter(s.proven, c[datapath.SynProxyProvenSYNs], iface)
	counter(s.engagements, c[datapath.SynProxyAutoEngaged], iface)
	for _, p := range sp.Engaged {
		gauge(s.engaged, 1, iface, strconv.Itoa(int(p)))
	}
}
