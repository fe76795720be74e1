//! Where a gateway may point: the rule that keeps `sipmediagwUrl` and `hlsUrl` away from this
//! machine, the cloud metadata service and the internal networks (server-side request forgery).
//!
//! An administrator's URL is a request we will make later, with a bearer token attached. So an
//! address that is not public (private, loopback, link-local, unspecified, multicast, broadcast,
//! documentation, benchmarking, CGNAT, and IPv6 forms that embed such an IPv4 address) is refused
//! unless its network is listed in `gateway_allowed_networks`. The same rule is applied to a host
//! name's resolved addresses at connection time (by the infrastructure's resolver), which defeats
//! DNS rebinding: registering `gw.example.org` is fine, connecting to it when it resolves to
//! `169.254.169.254` is not.
//!
//! URLs are classified after WHATWG parsing (the `url` crate), which already turns `0x7f000001`,
//! `2130706433`, `0177.0.0.1` and `127.1` into `127.0.0.1`: odd spellings cannot slip through.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use url::{Host, Url};

/// Why an address is not public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// RFC 1918, IPv6 unique-local (`fc00::/7`) and deprecated site-local (`fec0::/10`).
    Private,
    /// `100.64.0.0/10`, carrier-grade NAT.
    SharedCgnat,
    Loopback,
    /// `169.254.0.0/16` (the cloud metadata service lives there) and `fe80::/10`.
    LinkLocal,
    /// `0.0.0.0/8` and `::`: "this host" to most stacks.
    Unspecified,
    Multicast,
    Broadcast,
    Documentation,
    Benchmarking,
    /// Everything else set aside by IANA (`240.0.0.0/4`, `192.0.0.0/24`, `100::/64`, …).
    Reserved,
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressClass::Private => "private",
            AddressClass::SharedCgnat => "carrier-grade NAT",
            AddressClass::Loopback => "loopback",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Unspecified => "unspecified",
            AddressClass::Multicast => "multicast",
            AddressClass::Broadcast => "broadcast",
            AddressClass::Documentation => "documentation",
            AddressClass::Benchmarking => "benchmarking",
            AddressClass::Reserved => "reserved",
        })
    }
}

/// Why a gateway URL (or a resolved address) is refused. Messages are short and never repeat the
/// input, which may be kilobytes long.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressRefused {
    #[error("must be an http:// or https:// URL")]
    Scheme,
    #[error("must not contain credentials")]
    Credentials,
    #[error("must name a host")]
    NoHost,
    #[error(
        "points to a {class} address ({ip}), which gateways may not use unless its network is \
         listed in gateway_allowed_networks"
    )]
    Address { ip: IpAddr, class: AddressClass },
    #[error(
        "names this machine (localhost), which gateways may not use unless the loopback network \
         is listed in gateway_allowed_networks"
    )]
    LocalName,
    /// A host name resolved to nothing the policy accepts.
    #[error("resolves to no address gateways may use")]
    NoUsableAddress,
}

/// A setting that is not a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("gateway_allowed_networks: {entry:?} is not a network (expected a CIDR like 10.20.0.0/16 or an address)")]
pub struct BadNetwork {
    pub entry: String,
}

/// The gateway address rule, built once from `gateway_allowed_networks`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayAddressPolicy {
    allowed: Vec<IpNet>,
}

impl GatewayAddressPolicy {
    /// Non-public networks that are nevertheless allowed (public addresses always are).
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Self { allowed }
    }

    /// From the setting's strings: CIDRs, or bare addresses meaning that one host.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, BadNetwork> {
        let allowed = entries
            .iter()
            .map(|entry| {
                let text = entry.as_ref().trim();
                text.parse::<IpNet>()
                    .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| BadNetwork {
                        // Bounded: a configuration typo should not flood the startup error.
                        entry: text.chars().take(64).collect(),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { allowed })
    }

    pub fn allowed(&self) -> &[IpNet] {
        &self.allowed
    }

    /// Whether a URL may be a gateway's: http(s), no credentials, and a host that is a public
    /// address, an allowed one, or a name other than `localhost` (names are checked again, once
    /// resolved, at connection time).
    pub fn check(&self, url: &Url) -> Result<(), AddressRefused> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(AddressRefused::Scheme);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(AddressRefused::Credentials);
        }
        match url.host() {
            None => Err(AddressRefused::NoHost),
            Some(Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)),
            Some(Host::Domain(name)) => self.check_name(name),
        }
    }

    /// [`check`](Self::check) for a URL not parsed yet.
    pub fn check_str(&self, raw: &str) -> Result<(), AddressRefused> {
        let url = Url::parse(raw.trim()).map_err(|_| AddressRefused::NoHost)?;
        self.check(&url)
    }

    /// Whether a host name may be used before resolving it: only names of this machine are
    /// refused outright.
    pub fn check_name(&self, name: &str) -> Result<(), AddressRefused> {
        if name.is_empty() {
            return Err(AddressRefused::NoHost);
        }
        if is_local_name(name)
            && !self.allows(IpAddr::V4(Ipv4Addr::LOCALHOST))
            && !self.allows(IpAddr::V6(Ipv6Addr::LOCALHOST))
        {
            return Err(AddressRefused::LocalName);
        }
        Ok(())
    }

    /// Whether an address may be connected to.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), AddressRefused> {
        match classify(ip) {
            None => Ok(()),
            Some(_) if self.allows(ip) => Ok(()),
            Some(class) => Err(AddressRefused::Address {
                ip: canonical(ip),
                class,
            }),
        }
    }

    /// Whether an allowed network holds `ip` or the IPv4 address it embeds.
    fn allows(&self, ip: IpAddr) -> bool {
        let embedded = canonical(ip);
        self.allowed
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&embedded))
    }
}

/// `localhost`, `*.localhost` (RFC 6761: always this machine), with or without the final dot.
fn is_local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// The IPv4 address an IPv6 one stands for (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`,
/// NAT64 `64:ff9b::a.b.c.d`), else the address itself.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    // IPv4-compatible (deprecated, still routed by some stacks); `::` and `::1` are themselves.
    if s[..6] == [0; 6] && !(s[6] == 0 && s[7] <= 1) {
        return Some(low);
    }
    // The NAT64 well-known prefix reaches whatever IPv4 address it embeds.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(low);
    }
    None
}

const V4_RANGES: &[(Ipv4Net, AddressClass)] = &[
    (v4(0, 0, 0, 0, 8), AddressClass::Unspecified),
    (v4(10, 0, 0, 0, 8), AddressClass::Private),
    (v4(100, 64, 0, 0, 10), AddressClass::SharedCgnat),
    (v4(127, 0, 0, 0, 8), AddressClass::Loopback),
    (v4(169, 254, 0, 0, 16), AddressClass::LinkLocal),
    (v4(172, 16, 0, 0, 12), AddressClass::Private),
    (v4(192, 0, 0, 0, 24), AddressClass::Reserved),
    (v4(192, 0, 2, 0, 24), AddressClass::Documentation),
    (v4(192, 88, 99, 0, 24), AddressClass::Reserved),
    (v4(192, 168, 0, 0, 16), AddressClass::Private),
    (v4(198, 18, 0, 0, 15), AddressClass::Benchmarking),
    (v4(198, 51, 100, 0, 24), AddressClass::Documentation),
    (v4(203, 0, 113, 0, 24), AddressClass::Documentation),
    (v4(224, 0, 0, 0, 4), AddressClass::Multicast),
    (v4(255, 255, 255, 255, 32), AddressClass::Broadcast),
    (v4(240, 0, 0, 0, 4), AddressClass::Reserved),
];

const V6_RANGES: &[(Ipv6Net, AddressClass)] = &[
    (v6([0, 0, 0, 0, 0, 0, 0, 0], 128), AddressClass::Unspecified),
    (v6([0, 0, 0, 0, 0, 0, 0, 1], 128), AddressClass::Loopback),
    (
        v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
        AddressClass::Private,
    ),
    (v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64), AddressClass::Reserved),
    (
        v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48),
        AddressClass::Benchmarking,
    ),
    (
        v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        AddressClass::Documentation,
    ),
    (
        v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
        AddressClass::Documentation,
    ),
    (v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), AddressClass::Private),
    (
        v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        AddressClass::LinkLocal,
    ),
    (v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), AddressClass::Private),
    (
        v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),
        AddressClass::Multicast,
    ),
];

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix)
}

const fn v6(s: [u16; 8], prefix: u8) -> Ipv6Net {
    Ipv6Net::new_assert(
        Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
        prefix,
    )
}

/// Why `ip` is not a public address, or `None` when it is. An IPv6 address that embeds an IPv4
/// one is judged by the IPv4 address.
pub fn classify(ip: IpAddr) -> Option<AddressClass> {
    match canonical(ip) {
        IpAddr::V4(v4) => V4_RANGES
            .iter()
            .find(|(net, _)| net.contains(&v4))
            .map(|(_, class)| *class),
        IpAddr::V6(v6) => V6_RANGES
            .iter()
            .find(|(net, _)| net.contains(&v6))
            .map(|(_, class)| *class),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    fn url(text: &str) -> Url {
        Url::parse(text).expect("a URL")
    }

    fn strict() -> GatewayAddressPolicy {
        GatewayAddressPolicy::default()
    }

    #[test]
    fn ipv4_ranges_are_classified() {
        for (addr, class) in [
            ("10.0.0.1", AddressClass::Private),
            ("172.16.0.1", AddressClass::Private),
            ("172.31.255.255", AddressClass::Private),
            ("192.168.1.1", AddressClass::Private),
            ("100.64.0.1", AddressClass::SharedCgnat),
            ("100.127.255.254", AddressClass::SharedCgnat),
            ("127.0.0.1", AddressClass::Loopback),
            ("127.255.0.9", AddressClass::Loopback),
            ("169.254.169.254", AddressClass::LinkLocal),
            ("0.0.0.0", AddressClass::Unspecified),
            ("0.1.2.3", AddressClass::Unspecified),
            ("224.0.0.1", AddressClass::Multicast),
            ("239.255.255.250", AddressClass::Multicast),
            ("255.255.255.255", AddressClass::Broadcast),
            ("192.0.2.10", AddressClass::Documentation),
            ("198.51.100.10", AddressClass::Documentation),
            ("203.0.113.10", AddressClass::Documentation),
            ("198.18.0.1", AddressClass::Benchmarking),
            ("198.19.255.1", AddressClass::Benchmarking),
            ("240.0.0.1", AddressClass::Reserved),
            ("192.0.0.8", AddressClass::Reserved),
        ] {
            assert_eq!(classify(ip(addr)), Some(class), "{addr}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "172.15.255.255",
            "100.128.0.1",
            "193.48.0.1",
            "198.20.0.1",
        ] {
            assert_eq!(classify(ip(public)), None, "{public} is public");
        }
    }

    #[test]
    fn ipv6_ranges_and_embedded_ipv4_are_classified() {
        for (addr, class) in [
            ("::", AddressClass::Unspecified),
            ("::1", AddressClass::Loopback),
            ("fc00::1", AddressClass::Private),
            ("fd12:3456::1", AddressClass::Private),
            ("fe80::1", AddressClass::LinkLocal),
            ("febf::1", AddressClass::LinkLocal),
            ("fec0::1", AddressClass::Private),
            ("ff02::1", AddressClass::Multicast),
            ("2001:db8::1", AddressClass::Documentation),
            ("2001:2::1", AddressClass::Benchmarking),
            ("100::1", AddressClass::Reserved),
            // Mapped, compatible and NAT64 forms are judged by the IPv4 address they carry.
            ("::ffff:127.0.0.1", AddressClass::Loopback),
            ("::ffff:169.254.169.254", AddressClass::LinkLocal),
            ("::ffff:10.1.2.3", AddressClass::Private),
            ("::127.0.0.1", AddressClass::Loopback),
            ("::192.168.0.1", AddressClass::Private),
            ("64:ff9b::169.254.169.254", AddressClass::LinkLocal),
            ("64:ff9b:1::1", AddressClass::Private),
        ] {
            assert_eq!(classify(ip(addr)), Some(class), "{addr}");
        }
        for public in [
            "2001:4860:4860::8888",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert_eq!(classify(ip(public)), None, "{public} is public");
        }
    }

    #[test]
    fn odd_spellings_are_normalised_before_the_check() {
        for spelling in [
            "http://127.0.0.1:8080/",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://127.0.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[0:0:0:0:0:ffff:127.0.0.1]/",
            "http://localhost/",
            "http://LOCALHOST./",
            "http://gw.localhost:8100/",
            "http://169.254.169.254/latest/meta-data/",
            "http://0xa9fea9fe/",
            "http://10.0.0.1/",
            "http://192.168.1.1/",
            "http://172.16.0.1/",
            "http://[fe80::1]/",
            "http://0.0.0.0/",
            "http://0/",
            "https://[::]/",
        ] {
            assert!(
                strict().check(&url(spelling)).is_err(),
                "{spelling} must be refused"
            );
        }
        assert_eq!(url("http://0x7f000001/").host_str(), Some("127.0.0.1"));
        assert_eq!(url("http://2130706433/").host_str(), Some("127.0.0.1"));
        assert_eq!(url("http://127.1/").host_str(), Some("127.0.0.1"));
        assert_eq!(
            strict().check(&url("http://[::ffff:127.0.0.1]/")),
            Err(AddressRefused::Address {
                ip: ip("127.0.0.1"),
                class: AddressClass::Loopback
            })
        );
    }

    #[test]
    fn public_addresses_and_names_pass() {
        for good in [
            "https://gw.univ.fr",
            "http://gw-a.example.org:8080/api",
            "http://193.48.0.1/",
            "https://[2001:4860:4860::8888]/",
            "http://localhost.example.org/",
        ] {
            assert_eq!(strict().check(&url(good)), Ok(()), "{good}");
        }
    }

    #[test]
    fn schemes_other_than_http_and_credentials_are_refused() {
        assert_eq!(
            strict().check(&url("ftp://gw.univ.fr/")),
            Err(AddressRefused::Scheme)
        );
        assert_eq!(
            strict().check(&url("file:///etc/passwd")),
            Err(AddressRefused::Scheme)
        );
        assert_eq!(
            strict().check(&url("https://user:pw@gw.univ.fr/")),
            Err(AddressRefused::Credentials)
        );
        assert_eq!(
            strict().check(&url("https://user@gw.univ.fr/")),
            Err(AddressRefused::Credentials)
        );
    }

    #[test]
    fn allowed_networks_make_exceptions_and_nothing_more() {
        let policy = GatewayAddressPolicy::parse(&["127.0.0.0/8", " 10.20.0.0/16 ", "fd00::/8"])
            .expect("valid networks");
        assert_eq!(policy.check(&url("http://127.0.0.1:8100/")), Ok(()));
        assert_eq!(policy.check(&url("http://0x7f000001/")), Ok(()));
        // A mapped address belongs to the IPv4 network it carries.
        assert_eq!(policy.check(&url("http://[::ffff:127.0.0.1]/")), Ok(()));
        // localhost is this machine: allowed with the loopback network.
        assert_eq!(policy.check(&url("http://localhost:8100/")), Ok(()));
        assert_eq!(policy.check(&url("http://10.20.3.4/")), Ok(()));
        assert_eq!(policy.check(&url("http://[fd00::5]/")), Ok(()));
        for still_refused in [
            "http://10.21.0.1/",
            "http://[::1]/",
            "http://169.254.169.254/",
            "http://192.168.1.1/",
            "http://[fe80::1]/",
        ] {
            assert!(
                policy.check(&url(still_refused)).is_err(),
                "{still_refused}"
            );
        }
        let one_host = GatewayAddressPolicy::parse(&["127.0.0.1"]).expect("an address");
        assert_eq!(one_host.check_ip(ip("127.0.0.1")), Ok(()));
        assert!(one_host.check_ip(ip("127.0.0.2")).is_err());
        let v6_loopback = GatewayAddressPolicy::parse(&["::1/128"]).expect("valid");
        assert_eq!(v6_loopback.check(&url("http://[::1]:8100/")), Ok(()));
        assert_eq!(v6_loopback.check(&url("http://localhost/")), Ok(()));
        assert!(v6_loopback.check(&url("http://127.0.0.1/")).is_err());
    }

    #[test]
    fn malformed_networks_are_named() {
        for bad in ["10.0.0.0/33", "not-a-net", "10.0.0/8", "fe80::/129", ""] {
            let error = GatewayAddressPolicy::parse(&[bad]).expect_err(bad);
            assert!(
                error.to_string().contains("gateway_allowed_networks"),
                "{error}"
            );
        }
        let long = "x".repeat(5000);
        let error = GatewayAddressPolicy::parse(&[long]).expect_err("refused");
        assert!(error.to_string().len() < 200, "not echoed whole");
    }

    #[test]
    fn refusals_do_not_echo_the_input() {
        let long = format!("http://{}.localhost/", "a".repeat(1500));
        let error = strict().check(&url(&long)).expect_err("refused");
        assert!(error.to_string().len() < 200, "{error}");
    }
}
