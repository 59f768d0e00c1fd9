//! Microsoft Graph tenant simulator (see README "Graph simulator").
