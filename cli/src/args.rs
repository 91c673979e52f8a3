//! The commands, as `clap` reads them. The same tree serves `sw` and the controller's SSH
//! command line (which leaves out what only makes sense on an operator's own machine).

use clap::{Args, Parser, Subcommand};

/// SERVERware from the command line: hosts, VPSes, templates, tasks, events, users and tokens,
/// through the controller's REST API.
///
/// Exit codes: 0 done; 1 the operation failed (a task ended failed, the controller erred);
/// 2 the command line is wrong; 3 the controller refused the input (the field is named);
/// 4 not logged in, or not allowed (role); 5 not found; 6 conflict (busy, exists, no room);
/// 7 the controller cannot be reached; 8 too many attempts (wait and retry).
#[derive(Parser, Debug)]
#[command(name = "sw", version = serverware_shared::BUILD, about, long_about, propagate_version = true)]
pub struct Cli {
    /// Print the API's JSON instead of tables (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
    /// The controller, e.g. https://controller:8080 (default: the one `sw login` saved).
    #[arg(long, env = "SERVERWARE_URL", global = true, hide_env_values = true)]
    pub url: Option<String>,
    /// An API token (default: the one `sw login` saved).
    #[arg(long, env = "SERVERWARE_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Accept the controller's TLS certificate without checking it (a self-signed one).
    #[arg(long, env = "SERVERWARE_INSECURE", global = true)]
    pub insecure: bool,
    /// Answer yes to confirmations (a host's key, deletions).
    #[arg(long, short = 'y', global = true)]
    pub yes: bool,
    /// Which saved site (controller or pair) to use, by the name `sw site add` or
    /// `sw login --site` gave it (default: the current one, `sw site use`).
    #[arg(long, env = "SERVERWARE_SITE", global = true)]
    pub site: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Log in once: an API token is made for this machine and kept (mode 0600) in
    /// ~/.config/serverware/cli.json.
    Login {
        /// The controller, e.g. https://controller:8080.
        url: Option<String>,
        #[arg(long, short, default_value = "admin")]
        user: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Revoke the saved token of the current site (or --site) and forget it.
    Logout,
    /// The sites (controllers or pairs) logged in to: each a named login, one current.
    #[command(subcommand)]
    Site(SiteCmd),
    /// Who you are, and with which role.
    Whoami,
    /// The site at a glance: healthy or not, hosts, HA VPSes protected and at risk,
    /// duplication lag, storage, and each incident now with what is being done.
    Status,
    /// Hosts: the servers VPSes run on.
    #[command(subcommand)]
    Host(HostCmd),
    /// VPSes.
    #[command(subcommand)]
    Vps(VpsCmd),
    /// Templates VPSes are made from.
    #[command(subcommand)]
    Template(TemplateCmd),
    /// Machines that boot from the network to become hosts: add, approve, re-image, forget.
    #[command(subcommand)]
    Machine(MachineCmd),
    /// Alerts: notification targets, a test message, the incidents told.
    #[command(subcommand)]
    Alert(AlertCmd),
    /// Tasks: long operations, with their progress and log.
    #[command(subcommand)]
    Task(TaskCmd),
    /// Events: the audit log and what the controller did on its own.
    #[command(subcommand)]
    Event(EventCmd),
    /// Users (admins).
    #[command(subcommand)]
    User(UserCmd),
    /// API tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Your SSH public keys (they log in to the controller's SSH command line as you).
    #[command(subcommand, name = "ssh-key")]
    SshKey(SshKeyCmd),
    /// Prints a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand, Debug)]
pub enum HostCmd {
    /// Every host with its state and load.
    List,
    /// One host, with its newest netRES sample (its figures now).
    Show { host: String },
    /// Add a host over SSH: its key is shown for confirmation (or checked against
    /// --fingerprint), then the controller installs its own key and its agent.
    Add(AddHost),
    /// Change a host's settings.
    Edit(EditHost),
    /// Remove a host (it must hold no VPS).
    Delete { host: String },
    /// Fail over every HA VPS of the host to other hosts.
    Failover { host: String },
    /// Rehearse the host's failover: a drill of each of its HA VPSes, all at once.
    Drill { host: String },
}

#[derive(Subcommand, Debug)]
pub enum SiteCmd {
    /// Every site logged in to: name, controller, user; the current one marked *.
    List,
    /// Log in to a site and keep it under NAME (as `sw --site NAME login URL`).
    Add {
        name: String,
        /// The controller, e.g. https://controller:8080.
        url: String,
        #[arg(long, short, default_value = "admin")]
        user: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Make NAME the site commands go to.
    Use { name: String },
    /// Revoke NAME's token and forget it.
    Remove { name: String },
}

#[derive(Subcommand, Debug)]
pub enum VpsCmd {
    /// Every VPS (or those matching): name, address, state, uptime, context, processes, host,
    /// CPU, memory. Read from the controller a page at a time.
    List {
        /// Only VPSes whose name or address contains this.
        #[arg(long)]
        filter: Option<String>,
        /// Only the VPSes on this host.
        #[arg(long)]
        host: Option<String>,
    },
    /// One VPS.
    Show { vps: String },
    /// A root shell inside a running VPS on this terminal (operators; audited). Ctrl-] ends it.
    Console { vps: String },
    /// Make a VPS from a template (a task; --wait follows it).
    Create(CreateVps),
    Start {
        vps: String,
        #[command(flatten)]
        wait: Wait,
    },
    Stop {
        vps: String,
        /// Seconds to wait for a clean stop before forcing it.
        #[arg(long)]
        timeout: Option<u32>,
        #[command(flatten)]
        wait: Wait,
    },
    Restart {
        vps: String,
        #[arg(long)]
        timeout: Option<u32>,
        #[command(flatten)]
        wait: Wait,
    },
    /// Change a VPS's settings.
    Edit(EditVps),
    /// Delete a VPS and its files on its host.
    Delete {
        vps: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// A copy under a new name and address.
    Copy {
        vps: String,
        name: String,
        /// The copy's address (as --ipv4, the way `vps create` takes it).
        #[arg(required_unless_present = "ipv4_flag", conflicts_with = "ipv4_flag")]
        ipv4: Option<String>,
        #[arg(long = "ipv4", id = "ipv4_flag", value_name = "IPV4")]
        ipv4_flag: Option<String>,
        /// Onto this host (default: the same).
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        start: bool,
        #[command(flatten)]
        wait: Wait,
    },
    /// Move to another host.
    Move {
        vps: String,
        host: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Stop it, duplicate it once more, and bring it up on another host (HA VPSes).
    Failover { vps: String },
    /// netDUPLO: its duplication now, or a cycle at once (--now), or duplication on or off.
    Duplo {
        vps: String,
        /// Run a cycle now.
        #[arg(long)]
        now: bool,
        #[arg(long)]
        enable: Option<bool>,
    },
    /// Its restore points, newest last.
    Points { vps: String },
    /// Rehearse its failover (HA VPSes): its newest restore point brought up on another host in
    /// an isolated network and checked, then removed; the report gives RTO and RPO.
    Drill {
        vps: String,
        #[command(flatten)]
        wait: Wait,
    },
    /// Its failover drills, newest first: result, RTO, RPO.
    Drills { vps: String },
    /// Restore it from a restore point (in place), or make a new VPS from one (--as NAME).
    Restore {
        vps: String,
        cycle: u64,
        #[arg(long)]
        host: Option<String>,
        /// A new VPS with this name …
        #[arg(long = "as", requires = "ipv4")]
        clone_name: Option<String>,
        /// … and this address.
        #[arg(long)]
        ipv4: Option<String>,
        #[command(flatten)]
        wait: Wait,
    },
}

#[derive(Args, Debug, Default)]
pub struct Wait {
    /// Follow the task until it ends, with its progress.
    #[arg(long, short)]
    pub wait: bool,
}

#[derive(Args, Debug)]
pub struct CreateVps {
    pub name: String,
    /// Its template, by name or id.
    #[arg(long)]
    pub template: String,
    /// Its address.
    #[arg(long)]
    pub ipv4: String,
    /// Memory, e.g. 512M or 2G.
    #[arg(long, default_value = "512M")]
    pub memory: String,
    /// A host by name or id (default: where most room is left).
    #[arg(long)]
    pub host: Option<String>,
    #[arg(long)]
    pub hostname: Option<String>,
    #[arg(long, default_value = "")]
    pub description: String,
    #[arg(long)]
    pub cpu_shares: Option<u32>,
    /// CPU limit in CPUs (1.5 = one and a half).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Start it once made.
    #[arg(long)]
    pub start: bool,
    /// netMON high availability.
    #[arg(long)]
    pub ha: bool,
    #[arg(long, allow_negative_numbers = true)]
    pub ha_priority: Option<i32>,
    /// TCP ports its service checks try (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub check_ports: Vec<u32>,
    /// Root in the VPS is root on its host (only for templates that need it).
    #[arg(long)]
    pub privileged: bool,
    #[command(flatten)]
    pub wait: Wait,
}

// `sw host add`.
#[derive(Args, Debug)]
pub struct AddHost {
    pub name: String,
    /// ssh://user@address[:port]
    pub address: String,
    /// The host key's fingerprint (SHA256:…) you expect: no question asked if it matches.
    #[arg(long)]
    pub fingerprint: Option<String>,
    /// Read the SSH password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// An OpenSSH private key file, instead of a password.
    #[arg(long, conflicts_with = "password_stdin")]
    pub private_key: Option<std::path::PathBuf>,
    #[arg(long, default_value = "")]
    pub description: String,
    /// netDUPLO's cycle interval for its VPSes, in seconds.
    #[arg(long)]
    pub duplo_interval: Option<u32>,
}

// `sw host edit`.
#[derive(Args, Debug)]
pub struct EditHost {
    pub host: String,
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// Sampling interval in milliseconds.
    #[arg(long)]
    pub interval_ms: Option<u32>,
    /// Root-filesystem transfers at once.
    #[arg(long)]
    pub max_transfers: Option<u32>,
    /// netDUPLO's cycle interval, in seconds.
    #[arg(long)]
    pub duplo_interval: Option<u32>,
    /// Into maintenance (its VPSes are moved away) or out of it.
    #[arg(long)]
    pub maintenance: Option<bool>,
    /// Declared memory for VPSes (e.g. 64G; 0: what the host reports).
    #[arg(long)]
    pub capacity_memory: Option<String>,
    /// Declared CPUs for VPSes (0: what the host reports).
    #[arg(long)]
    pub capacity_cpus: Option<u32>,
    /// Declared disk for VPSes (e.g. 2T; 0: what the host reports).
    #[arg(long)]
    pub capacity_disk: Option<String>,
    /// The bridge VPS interfaces join.
    #[arg(long)]
    pub vps_bridge: Option<String>,
    /// The prefix length of VPS addresses.
    #[arg(long)]
    pub vps_prefix_len: Option<u8>,
    /// The VPSes' gateway ("" removes it).
    #[arg(long)]
    pub vps_gateway: Option<String>,
}

#[derive(Args, Debug)]
pub struct EditVps {
    pub vps: String,
    #[arg(long)]
    pub description: Option<String>,
    #[arg(long)]
    pub ipv4: Option<String>,
    #[arg(long)]
    pub hostname: Option<String>,
    /// Memory, e.g. 512M or 2G.
    #[arg(long)]
    pub memory: Option<String>,
    /// 0 removes the setting.
    #[arg(long)]
    pub cpu_shares: Option<u32>,
    /// CPU limit in CPUs; 0 removes it.
    #[arg(long)]
    pub cpus: Option<f64>,
    #[arg(long)]
    pub autostart: Option<bool>,
    #[arg(long)]
    pub ha: Option<bool>,
    #[arg(long, allow_negative_numbers = true)]
    pub ha_priority: Option<i32>,
    /// Replaces the checked ports (comma-separated; "" for ICMP only).
    #[arg(long)]
    pub check_ports: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum AlertCmd {
    /// Notification targets, with their rules and delivery.
    List,
    /// The incidents alerts were sent for: open ones first, then the newest cleared.
    Incidents,
    /// Send a test message to a target now and say what its receiver answered.
    Test {
        /// The target's name (or id).
        target: String,
    },
}

/// What an approved machine gets.
#[derive(clap::Args, Debug)]
pub struct MachineApproval {
    /// The host name it gets (default: the one listed, or host- and the end of its MAC).
    #[arg(long)]
    pub name: Option<String>,
    /// A static address with its prefix (10.0.0.5/24) instead of the site's DHCP.
    #[arg(long)]
    pub address: Option<String>,
    /// The gateway for a static address.
    #[arg(long)]
    pub gateway: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum MachineCmd {
    /// Every machine that booted from the network, with its state, stage and image.
    List,
    /// Add a machine by its MAC before it boots, approved: its first boot gets a join token.
    Add {
        /// Its MAC address (on its label, or its firmware's boot screen).
        mac: String,
        #[command(flatten)]
        approval: MachineApproval,
    },
    /// Let a waiting machine join: its next boot gets a one-time join token.
    Approve {
        /// Its MAC address (as listed).
        mac: String,
        #[command(flatten)]
        approval: MachineApproval,
    },
    /// Reboot a joined host (in maintenance) into another host image.
    Reimage {
        /// Its MAC address or host name.
        machine: String,
        /// The image id (`serverware image list`); the newest when left out.
        #[arg(long)]
        image: Option<String>,
        /// Even though VPSes still run there (they stop, and start again with the host).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        wait: Wait,
    },
    /// Forget a machine that has not joined.
    Forget { mac: String },
}

#[derive(Subcommand, Debug)]
pub enum TemplateCmd {
    List,
    /// Upload a root filesystem archive (.tar or .tar.gz with an sbin/init) as a template.
    Upload {
        name: String,
        /// The archive on this machine.
        file: std::path::PathBuf,
        /// Its system, as shown (debian, alpine …).
        #[arg(long, default_value = "linux")]
        os: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Build a Debian template with debootstrap on the controller (a task; --wait follows it).
    Build {
        name: String,
        /// Debian suite (default bookworm).
        #[arg(long)]
        suite: Option<String>,
        /// Debian mirror (default http://deb.debian.org/debian).
        #[arg(long)]
        mirror: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        wait: Wait,
    },
    Delete {
        template: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum TaskCmd {
    /// The newest tasks.
    List {
        /// running, succeeded or failed.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One task with its log.
    Show { id: i64 },
    /// Follow a task until it ends, with a progress bar; the exit code says how it ended.
    Follow { id: i64 },
}

#[derive(Subcommand, Debug)]
pub enum EventCmd {
    /// The newest events, newest last.
    List {
        /// Exact action, or a prefix ending in "." (vps., netmon.).
        #[arg(long)]
        action: Option<String>,
        #[arg(long)]
        actor: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Keep printing new events as they happen.
        #[arg(long, short)]
        follow: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    List,
    /// Add a user (its password from the first line of standard input).
    Create {
        username: String,
        /// admin, operator or viewer.
        #[arg(long, default_value = "viewer")]
        role: String,
    },
    Edit {
        user: String,
        #[arg(long)]
        role: Option<String>,
        #[arg(long)]
        disabled: Option<bool>,
        /// A new password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    Delete {
        user: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    List,
    /// A new token; its secret is printed once.
    Create {
        name: String,
        /// A lower role than your own (viewer, operator).
        #[arg(long)]
        role: Option<String>,
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    Revoke {
        id: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum SshKeyCmd {
    List,
    /// Add a public key: a file such as ~/.ssh/id_ed25519.pub, or - for standard input.
    Add {
        name: String,
        file: String,
    },
    Delete {
        id: i64,
    },
}
