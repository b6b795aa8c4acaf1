package datapath

// The BPF objects are generated and committed, so building needs no clang.
// `make generate` runs this with the compiler and flags pinned in the Makefile.
//go:generate go tool bpf2go -target bpfel dispatcher ../../bpf/dispatcher.c -- -I../../bpf
//go:generate go tool bpf2go -target bpfel -type xdpg_reason -type xdpg_port_counters -type xdpg_src_key -type xdpg_source -type xdpg_meta -type xdpg_lpm_key -type xdpg_deny_block -type xdpg_rule_slot -type xdpg_rule_counters -type xdpg_rule_name -type xdpg_group_rule_key -type xdpg_health_counter -type xdpg_event -type xdpg_event_budget -type xdpg_protection -type xdpg_ban_origin -type xdpg_ban_range -type xdpg_synproxy_counter -type xdpg_synproxy_port -type xdpg_trace_sample xdpguard ../../bpf/xdpguard.c -- -I../../bpf
