//! The one table of MCP methods the gateway knows: each method's wire name, whether it is a
//! request or a notification, which protocol eras have it, and how the gateway serves it. The
//! engine dispatches by [`Method`], the faces ask it what a method is, and nothing else matches
//! method names.

use super::version::Era;

/// A method the gateway knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `initialize`.
    Initialize,
    /// `ping`.
    Ping,
    /// `server/discover` (2026-07-28).
    ServerDiscover,
    /// `subscriptions/listen` (2026-07-28): a long-lived stream of change notifications.
    SubscriptionsListen,
    /// `tools/list`.
    ToolsList,
    /// `tools/call`.
    ToolsCall,
    /// `resources/list`.
    ResourcesList,
    /// `resources/templates/list`.
    ResourceTemplatesList,
    /// `resources/read`.
    ResourcesRead,
    /// `resources/subscribe`.
    ResourcesSubscribe,
    /// `resources/unsubscribe`.
    ResourcesUnsubscribe,
    /// `prompts/list`.
    PromptsList,
    /// `prompts/get`.
    PromptsGet,
    /// `completion/complete`.
    CompletionComplete,
    /// `logging/setLevel`.
    LoggingSetLevel,
    /// `notifications/initialized`.
    Initialized,
    /// `notifications/cancelled`.
    Cancelled,
    /// `notifications/roots/list_changed`.
    RootsListChanged,
}

/// Request (answered) or notification (not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Has an id and gets a response.
    Request,
    /// No id, no response.
    Notification,
}

/// Which eras have a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eras {
    /// Every revision.
    All,
    /// The session era only (removed in 2026-07-28).
    Session,
    /// The stateless era only.
    Stateless,
}

/// How the gateway serves a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serving {
    /// The gateway answers it itself (lifecycle, ping, the session's log level).
    Gateway,
    /// A merged list: local members and every upstream's, from the registry's snapshot.
    Listing,
    /// One member: answered locally, or forwarded to the upstream it comes from.
    Member,
    /// Forwarded to the member's upstream; kept open there while subscribed.
    Subscription,
    /// A client notification passed on to the upstreams serving its session.
    ToUpstreams,
    /// A client notification that needs nothing.
    Consumed,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct MethodInfo {
    /// The method.
    pub method: Method,
    /// Its wire name.
    pub name: &'static str,
    /// Request or notification.
    pub kind: Kind,
    /// Which eras have it.
    pub eras: Eras,
    /// How it is served.
    pub serving: Serving,
}

const fn row(method: Method, name: &'static str, kind: Kind, eras: Eras, serving: Serving) -> MethodInfo {
    MethodInfo {
        method,
        name,
        kind,
        eras,
        serving,
    }
}

use Eras::{All, Session, Stateless};
use Kind::{Notification, Request};
use Method as M;

/// Every method the gateway knows.
pub const METHODS: &[MethodInfo] = &[
    row(M::Initialize, "initialize", Request, Session, Serving::Gateway),
    row(M::Ping, "ping", Request, Session, Serving::Gateway),
    row(
        M::ServerDiscover,
        "server/discover",
        Request,
        Stateless,
        Serving::Gateway,
    ),
    row(
        M::SubscriptionsListen,
        "subscriptions/listen",
        Request,
        Stateless,
        Serving::Gateway,
    ),
    row(M::ToolsList, "tools/list", Request, All, Serving::Listing),
    row(M::ToolsCall, "tools/call", Request, All, Serving::Member),
    row(M::ResourcesList, "resources/list", Request, All, Serving::Listing),
    row(
        M::ResourceTemplatesList,
        "resources/templates/list",
        Request,
        All,
        Serving::Listing,
    ),
    row(M::ResourcesRead, "resources/read", Request, All, Serving::Member),
    row(
        M::ResourcesSubscribe,
        "resources/subscribe",
        Request,
        Session,
        Serving::Subscription,
    ),
    row(
        M::ResourcesUnsubscribe,
        "resources/unsubscribe",
        Request,
        Session,
        Serving::Subscription,
    ),
    row(M::PromptsList, "prompts/list", Request, All, Serving::Listing),
    row(M::PromptsGet, "prompts/get", Request, All, Serving::Member),
    row(
        M::CompletionComplete,
        "completion/complete",
        Request,
        All,
        Serving::Member,
    ),
    row(
        M::LoggingSetLevel,
        "logging/setLevel",
        Request,
        Session,
        Serving::Gateway,
    ),
    row(
        M::Initialized,
        "notifications/initialized",
        Notification,
        Session,
        Serving::Consumed,
    ),
    row(
        M::Cancelled,
        "notifications/cancelled",
        Notification,
        All,
        Serving::ToUpstreams,
    ),
    row(
        M::RootsListChanged,
        "notifications/roots/list_changed",
        Notification,
        Session,
        Serving::ToUpstreams,
    ),
];

impl Method {
    /// The method a wire name names, if the gateway knows it.
    pub fn parse(name: &str) -> Option<Method> {
        METHODS.iter().find(|r| r.name == name).map(|r| r.method)
    }

    /// The method of a JSON-RPC message (its `method` member), if the gateway knows it.
    pub fn of(msg: &serde_json::Value) -> Option<Method> {
        Self::parse(msg.get("method")?.as_str()?)
    }

    /// Its row of the table.
    pub fn info(self) -> &'static MethodInfo {
        // Every variant has a row (checked by a test).
        METHODS.iter().find(|r| r.method == self).unwrap_or(&METHODS[0])
    }

    /// Its wire name.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// True when `era` has this method.
    pub fn in_era(self, era: Era) -> bool {
        match self.info().eras {
            All => true,
            Session => era == Era::Session,
            Stateless => era == Era::Stateless,
        }
    }

    /// `Some(true)` for `resources/subscribe`, `Some(false)` for `resources/unsubscribe`.
    pub fn subscribes(self) -> Option<bool> {
        match self {
            M::ResourcesSubscribe => Some(true),
            M::ResourcesUnsubscribe => Some(false),
            _ => None,
        }
    }
}

/// What a server says to its client besides answers: its requests (in the session era) and its
/// notifications, as the gateway reads, relays or makes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerMethod {
    /// `sampling/createMessage`.
    CreateMessage,
    /// `elicitation/create`.
    Elicit,
    /// `roots/list`.
    ListRoots,
    /// `ping` (a server may ping its client).
    Ping,
    /// `notifications/progress`.
    Progress,
    /// `notifications/message`: a log message.
    Log,
    /// `notifications/resources/updated`.
    ResourceUpdated,
    /// `notifications/{list}/list_changed`.
    ListChanged(Listed),
    /// `notifications/subscriptions/acknowledged` (2026-07-28): the first message of a listen
    /// stream.
    Acknowledged,
    /// `notifications/cancelled`.
    Cancelled,
    /// `notifications/elicitation/complete` (2025-11-25): a URL elicitation's interaction ended.
    ElicitationComplete,
}

impl ServerMethod {
    /// Every method, for parsing.
    const ALL: [Self; 13] = [
        Self::CreateMessage,
        Self::Elicit,
        Self::ListRoots,
        Self::Ping,
        Self::Progress,
        Self::Log,
        Self::ResourceUpdated,
        Self::ListChanged(Listed::Tools),
        Self::ListChanged(Listed::Resources),
        Self::ListChanged(Listed::Prompts),
        Self::Acknowledged,
        Self::Cancelled,
        Self::ElicitationComplete,
    ];

    /// Its wire name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::CreateMessage => "sampling/createMessage",
            Self::Elicit => "elicitation/create",
            Self::ListRoots => "roots/list",
            Self::Ping => "ping",
            Self::Progress => "notifications/progress",
            Self::Log => "notifications/message",
            Self::ResourceUpdated => "notifications/resources/updated",
            Self::ListChanged(l) => l.changed(),
            Self::Acknowledged => "notifications/subscriptions/acknowledged",
            Self::Cancelled => "notifications/cancelled",
            Self::ElicitationComplete => "notifications/elicitation/complete",
        }
    }

    /// The method a wire name names, if the gateway knows it.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The method of a JSON-RPC message (its `method` member), if the gateway knows it.
    pub fn of(msg: &serde_json::Value) -> Option<Self> {
        Self::parse(msg.get("method")?.as_str()?)
    }

    /// True for the requests a server sends its client for input: sampling, elicitation, roots.
    pub fn asks_input(self) -> bool {
        matches!(self, Self::CreateMessage | Self::Elicit | Self::ListRoots)
    }
}

/// A list whose changes a server announces (`notifications/{list}/list_changed`), in the order
/// clients are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Listed {
    /// `notifications/prompts/list_changed`.
    Prompts,
    /// `notifications/resources/list_changed`.
    Resources,
    /// `notifications/tools/list_changed`.
    Tools,
}

impl Listed {
    /// Every list, in the order clients are told.
    pub const ALL: [Self; 3] = [Self::Prompts, Self::Resources, Self::Tools];

    /// The notification announcing a change of this list.
    pub const fn changed(self) -> &'static str {
        match self {
            Self::Tools => "notifications/tools/list_changed",
            Self::Resources => "notifications/resources/list_changed",
            Self::Prompts => "notifications/prompts/list_changed",
        }
    }

    /// The list a server's notification says changed, if it is one of these.
    pub fn changed_by(method: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.changed() == method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_has_one_row_and_its_name_parses_back() {
        let all = [
            M::Initialize,
            M::Ping,
            M::ServerDiscover,
            M::SubscriptionsListen,
            M::ToolsList,
            M::ToolsCall,
            M::ResourcesList,
            M::ResourceTemplatesList,
            M::ResourcesRead,
            M::ResourcesSubscribe,
            M::ResourcesUnsubscribe,
            M::PromptsList,
            M::PromptsGet,
            M::CompletionComplete,
            M::LoggingSetLevel,
            M::Initialized,
            M::Cancelled,
            M::RootsListChanged,
        ];
        assert_eq!(all.len(), METHODS.len());
        for m in all {
            assert_eq!(METHODS.iter().filter(|r| r.method == m).count(), 1, "{m:?}");
            assert_eq!(Method::parse(m.name()), Some(m));
            assert_eq!(
                m.info().kind == Kind::Notification,
                m.name().starts_with("notifications/")
            );
        }
        assert_eq!(Method::parse("tools/cal"), None);
    }

    #[test]
    fn every_server_method_parses_back_and_notifications_say_so() {
        for m in ServerMethod::ALL {
            assert_eq!(ServerMethod::parse(m.name()), Some(m), "{m:?}");
            let notification = !matches!(
                m,
                ServerMethod::CreateMessage | ServerMethod::Elicit | ServerMethod::ListRoots | ServerMethod::Ping
            );
            assert_eq!(notification, m.name().starts_with("notifications/"), "{m:?}");
        }
        let msg = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"});
        assert_eq!(ServerMethod::of(&msg), Some(ServerMethod::ListChanged(Listed::Tools)));
        assert_eq!(ServerMethod::of(&serde_json::json!({"id": 1})), None);
    }

    #[test]
    fn the_eras_differ_where_the_specification_says() {
        assert!(M::Initialize.in_era(Era::Session) && !M::Initialize.in_era(Era::Stateless));
        assert!(M::ServerDiscover.in_era(Era::Stateless) && !M::ServerDiscover.in_era(Era::Session));
        assert!(M::ToolsCall.in_era(Era::Session) && M::ToolsCall.in_era(Era::Stateless));
        assert_eq!(M::ResourcesSubscribe.subscribes(), Some(true));
        assert_eq!(M::ToolsCall.subscribes(), None);
    }
}
