//! L4 policy at the node proxy: AuthorizationPolicy (as compiled by the control plane) and
//! PeerAuthentication, decided for each inbound connection.
