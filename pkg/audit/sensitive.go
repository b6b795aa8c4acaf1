package audit

// SensitivePort is a service that should not be open to the whole
// internet, and how bad it is when it is.
type SensitivePort struct {
	Proto    Proto    `json:"proto"`
	Port     uint16   `json:"port"`
	Name     string   `json:"name"`
	Severity Severity `json:"severity"`
	// Why is the risk, in a few words (it goes in the finding).
	Why string `json:"why"`
}

// DefaultSensitivePorts is the sensitive-port list: services meant for a
// private network that either run without authentication by default, hand
// over the host or the cluster, are the first targets of password
// guessing and wormable exploits, or (UDP) reflect small requests into
// large floods at a forged victim. These are the exposures internet-wide
// scanners look for and report to network owners. Each is high, except
// ssh and the Kubernetes API (medium): both are often public on purpose
// and authenticate every client, but are still best scoped to the
// networks that administer the host. Web ports, DNS, NTP and mail are left
// out: they are public on purpose. Sorted by protocol, then port.
var DefaultSensitivePorts = []SensitivePort{
	{TCP, 22, "ssh", Medium, "remote login, password-guessed from everywhere"},
	{TCP, 23, "telnet", High, "remote login in cleartext"},
	{TCP, 111, "rpcbind", High, "lists the host's RPC services (NFS)"},
	{TCP, 135, "msrpc", High, "Windows/Samba RPC endpoint mapper"},
	{TCP, 139, "netbios-ssn", High, "SMB file sharing over NetBIOS"},
	{TCP, 445, "smb", High, "file sharing; wormable exploits"},
	{TCP, 1433, "mssql", High, "database login"},
	{TCP, 1521, "oracle", High, "database listener"},
	{TCP, 2049, "nfs", High, "file system exports, trusted by address"},
	{TCP, 2375, "docker", High, "the Docker API without TLS: root on the host"},
	{TCP, 2379, "etcd", High, "cluster state and secrets; no authentication by default"},
	{TCP, 2380, "etcd-peer", High, "etcd cluster membership"},
	{TCP, 3306, "mysql", High, "database login"},
	{TCP, 3389, "rdp", High, "remote desktop, password-guessed and exploited"},
	{TCP, 5432, "postgresql", High, "database login"},
	{TCP, 5900, "vnc", High, "remote desktop, often with a weak password or none"},
	{TCP, 5984, "couchdb", High, "database HTTP API"},
	{TCP, 6379, "redis", High, "no authentication by default; an open instance is taken over"},
	{TCP, 6443, "kube-apiserver", Medium, "the Kubernetes API: authenticated, but the cluster's control plane"},
	{TCP, 9042, "cassandra", High, "database; no authentication by default"},
	{TCP, 9200, "elasticsearch", High, "search HTTP API; no authentication before 8.0"},
	{TCP, 9300, "elasticsearch-transport", High, "search cluster node protocol"},
	{TCP, 10250, "kubelet", High, "runs commands in pods when anonymous access is on"},
	{TCP, 10255, "kubelet-readonly", High, "unauthenticated pod and node details"},
	{TCP, 11211, "memcached", High, "cache with no authentication"},
	{TCP, 27017, "mongodb", High, "database; no authentication unless enabled"},
	{UDP, 111, "rpcbind", High, "RPC service list; a reflection amplifier"},
	{UDP, 137, "netbios-ns", High, "NetBIOS name service; a reflection amplifier"},
	{UDP, 161, "snmp", High, "device management by community string; a reflection amplifier"},
	{UDP, 389, "cldap", High, "connectionless LDAP; a reflection amplifier"},
	{UDP, 623, "ipmi", High, "the BMC: power and console of the machine"},
	{UDP, 1900, "ssdp", High, "UPnP discovery; a reflection amplifier"},
	{UDP, 5353, "mdns", High, "a link-local protocol; a reflection amplifier"},
	{UDP, 11211, "memcached", High, "no authentication; the largest reflection amplifier"},
}
