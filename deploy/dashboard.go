// Package deploy holds the files operators deploy (systemd unit, Grafana
// dashboard, Prometheus rules); its tests check them, and the end-to-end
// test in test/integration runs the dashboard's queries.
package deploy

import (
	"encoding/json"
	"os"
)

// Dashboard is the part of Grafana's dashboard model the checks read.
type Dashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []Panel `json:"panels"`
}

// Panel is a dashboard panel.
type Panel struct {
	Type        string `json:"type"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Datasource  *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// LoadDashboard reads deploy/grafana/xdpguard.json.
func LoadDashboard(path string) (*Dashboard, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var d Dashboard
	return &d, json.Unmarshal(b, &d)
}

// Queries lists every query of the dashboard's panels, by panel title.
func (d *Dashboard) Queries() map[string][]string {
	out := map[string][]string{}
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			out[p.Title] = append(out[p.Title], t.Expr)
		}
	}
	return out
}
