//! DNS wire format for the landscape network's name server (being written).
