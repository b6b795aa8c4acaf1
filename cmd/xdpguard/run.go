package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/xdpguard/xdpguard/pkg/audit"
	"github.com/xdpguard/xdpguard/pkg/daemon"
	"github.com/xdpguard/xdpguard/pkg/history"
	"github.com/xdpguard/xdpguard/pkg/loader"
)

func newRunCmd() *cobra.Command {
	var (
		cfg       daemon.Config
		mode      string
		logFormat string
	)
	cmd := &cobra.Command{
		Use:   "run --iface IF[,IF...] --policy FILE",
		Short: "Attach the filter and keep it in step with the policy file",
		Long: `run validates the policy, attaches xdpguard to each interface (or adopts the
filter already pinned there), serves Prometheus metrics and reloads the policy
on SIGHUP and whenever the file changes. A reload switches each interface to
the new policy in one step; a policy with errors is refused and the previous
one stays in force.

With --events, drops are also logged one JSON object per line (time,
interface, reason, source, proto, dport, rule, monitored), sampled in the
kernel to --events-rate per interface, so a flood cannot overload the daemon
or the disk; what the budget leaves out is counted, not logged.

Every generation switch (a file change, SIGHUP, a timed rule starting or
ending, listening sockets under allow_listening), every refused or rolled
back switch with why, the start, and the CrowdSec bouncer's bans are appended
to the change history, --audit-log (JSON lines, fsync'd, rotated at
--audit-log-max-size, rotations kept --audit-log-retention); the ban and
unban commands append to the same file. 'xdpguard history' reads it;
--audit-log '' keeps none.

Each minute (and at each reload) the daemon reads the per-rule counters and
records when each rule last counted a packet in --rule-usage, kept across
restarts: 'xdpguard audit' and xdpguard_audit_findings report rules unused
for 30 days (unused_rule).

On SIGTERM or SIGINT the daemon exits and the filter stays attached.`,
		Example: `  xdpguard run --iface eth1 --policy /etc/xdpguard/policy.yaml
  xdpguard run --iface eth1,eth2 --policy policy.yaml --metrics-addr 127.0.0.1:9477 --mode native
  xdpguard run --iface eth1 --policy policy.yaml --events /var/log/xdpguard/drops.jsonl --events-rate 50`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if logFormat != "text" && logFormat != "json" {
				return fmt.Errorf("--log-format: want text or json, got %q", logFormat)
			}
			cfg.Mode = loader.Mode(mode)
			cfg.BPFFS = bpffsFlag(cmd)
			var h slog.Handler = slog.NewTextHandler(cmd.ErrOrStderr(), nil)
			if logFormat == "json" {
				h = slog.NewJSONHandler(cmd.ErrOrStderr(), nil)
			}
			cfg.Logger = slog.New(h)
			cfg.SSHConnection = os.Getenv("SSH_CONNECTION")
			cfg.RuntimeDir = runtimeDir(cfg.RuntimeDir)
			for flag, p := range map[string]string{"--audit-log": cfg.AuditLog, "--rule-usage": cfg.UsagePath} {
				if p == history.DefaultPath || p == audit.DefaultUsagePath {
					// The unit's StateDirectory, made here when run by hand.
					if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
						return fmt.Errorf("%s: %w", flag, err)
					}
				}
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return daemon.Run(ctx, cfg)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&cfg.Ifaces, "iface", nil, "interfaces to filter (comma-separated or repeated)")
	f.StringVar(&cfg.PolicyPath, "policy", "", "policy file (YAML); see 'xdpguard check'")
	f.StringVar(&cfg.MetricsAddr, "metrics-addr", "127.0.0.1:9477", "address for /metrics (and /readyz); empty disables it; a non-loopback address needs --metrics-web-config with TLS, or --metrics-insecure")
	f.StringVar(&cfg.MetricsWebConfig, "metrics-web-config", "", "TLS, basic-auth and rate-limit configuration for /metrics (a Prometheus exporter-toolkit web config file); /readyz answers without auth")
	f.BoolVar(&cfg.MetricsInsecure, "metrics-insecure", false, "allow /metrics in plain HTTP on a non-loopback address (without TLS, basic auth sends the credentials in clear)")
	f.StringVar(&mode, "mode", string(loader.ModeAuto), "attach mode: auto (native XDP on physical NICs, tc on veth, bridges, tun/tap, bonds, VLANs and other virtual devices), native, generic (XDP in the stack, only when asked) or tc (tcx ingress on kernel 6.6+, a clsact filter before); a policy with syn_proxy needs XDP, and auto takes it")
	f.IntVar(&cfg.TopPorts, "metrics-top-ports", 50, "export per-port drops for at most this many ports (most drops first)")
	f.StringVar(&cfg.ReadyFile, "ready-file", "", "write the daemon's PID here once it is attached and serving")
	f.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&cfg.EventsPath, "events", "", "write sampled drop events as JSON lines to this file (- for stdout); reopened on SIGHUP")
	f.Uint64Var(&cfg.EventsRate, "events-rate", 100, "at most this many drop events per second per interface (the kernel counts the rest in xdpguard_events_lost_total)")
	f.Uint64Var(&cfg.EventsBurst, "events-burst", 200, "events allowed in a burst above --events-rate")
	f.StringVar(&cfg.RuntimeDir, "runtime-dir", "", "where the daemon reports its feeds' state for 'xdpguard status' (default $RUNTIME_DIRECTORY, set by systemd, else /run/xdpguard)")
	addAuditLogFlag(cmd, &cfg.AuditLog)
	f.Int64Var(&cfg.AuditLogMaxBytes, "audit-log-max-size", history.DefaultMaxBytes, "rotate the audit log at this many bytes")
	f.DurationVar(&cfg.AuditLogRetention, "audit-log-retention", history.DefaultRetention, "delete rotated audit logs last written longer ago than this")
	f.StringVar(&cfg.UsagePath, "rule-usage", audit.DefaultUsagePath, "keep each rule's last hit here, across restarts, for the audit's unused_rule (xdpguard audit reads it); empty keeps none")
	f.BoolVar(&cfg.Force, "force", false, "start even if the policy would refuse the SSH session running this command")
	f.BoolVar(&cfg.ReplaceForeign, "replace-foreign", false, "remove an XDP program attached by another tool (netlink) instead of refusing to start")
	_ = cmd.MarkFlagRequired("iface")
	_ = cmd.MarkFlagRequired("policy")
	return cmd
}

// runtimeDir is --runtime-dir, else systemd's RuntimeDirectory for the
// unit, else /run/xdpguard.
func runtimeDir(flag string) string {
	if flag != "" {
		return flag
	}
	if d := os.Getenv("RUNTIME_DIRECTORY"); d != "" {
		return d
	}
	return "/run/xdpguard"
}
