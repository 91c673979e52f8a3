// The one schema both databases share (migrations/sqlite and migrations/postgres).

diesel::table! {
    users (id) {
        id -> BigInt,
        username -> Text,
        password_hash -> Text,
        role -> Text,
        disabled -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        last_login_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    sessions (id) {
        id -> BigInt,
        token_hash -> Text,
        user_id -> BigInt,
        created_at -> Timestamp,
        last_seen_at -> Timestamp,
        ip -> Nullable<Text>,
        user_agent -> Nullable<Text>,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> BigInt,
        user_id -> BigInt,
        name -> Text,
        prefix -> Text,
        token_hash -> Text,
        role -> Text,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
        expires_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
        parent_token_id -> Nullable<BigInt>,
    }
}

diesel::table! {
    settings (key) {
        key -> Text,
        value -> Text,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    hosts (id) {
        id -> BigInt,
        name -> Text,
        description -> Text,
        ssh_user -> Text,
        address -> Text,
        ssh_port -> Integer,
        host_key_fingerprint -> Nullable<Text>,
        host_key -> Nullable<Text>,
        status -> Text,
        capacity_memory_bytes -> Nullable<BigInt>,
        capacity_cpus -> Nullable<Integer>,
        capacity_disk_bytes -> Nullable<BigInt>,
        sample_interval_ms -> Integer,
        duplo_interval_secs -> Integer,
        heartbeat_timeout_ms -> Integer,
        agent_version -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        last_seen_at -> Nullable<Timestamp>,
        vps_bridge -> Text,
        vps_prefix_len -> Integer,
        vps_gateway -> Nullable<Text>,
        max_transfers -> Integer,
        maintenance -> Bool,
    }
}

diesel::table! {
    templates (id) {
        id -> BigInt,
        name -> Text,
        os -> Text,
        description -> Text,
        size_bytes -> BigInt,
        storage_path -> Text,
        status -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    vpses (id) {
        id -> BigInt,
        name -> Text,
        description -> Text,
        host_id -> Nullable<BigInt>,
        template_id -> Nullable<BigInt>,
        ipv4 -> Text,
        hostname -> Text,
        memory_limit_bytes -> BigInt,
        cpu_shares -> Nullable<Integer>,
        cpu_limit_millis -> Nullable<Integer>,
        disk_limit_bytes -> Nullable<BigInt>,
        autostart -> Bool,
        ha_enabled -> Bool,
        status -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        desired_state -> Text,
        privileged -> Bool,
        id_base -> Nullable<BigInt>,
        duplo_enabled -> Bool,
        ha_priority -> Integer,
        check_ports -> Text,
    }
}

diesel::table! {
    duplo_points (id) {
        id -> BigInt,
        vps_id -> BigInt,
        cycle -> BigInt,
        host_id -> Nullable<BigInt>,
        taken_at -> Timestamp,
        full_compare -> Bool,
        full_reason -> Nullable<Text>,
        files -> BigInt,
        bytes -> BigInt,
        entries_read -> BigInt,
        chunks_new -> BigInt,
        bytes_new -> BigInt,
        duration_ms -> BigInt,
        freeze_ms -> BigInt,
        consistent -> Bool,
        unchanged_until -> Nullable<Timestamp>,
    }
}

diesel::table! {
    tasks (id) {
        id -> BigInt,
        kind -> Text,
        status -> Text,
        target_type -> Nullable<Text>,
        target_id -> Nullable<Text>,
        progress_pct -> Integer,
        bytes_done -> BigInt,
        bytes_total -> Nullable<BigInt>,
        created_by -> Text,
        error -> Nullable<Text>,
        created_at -> Timestamp,
        started_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    task_logs (id) {
        id -> BigInt,
        task_id -> BigInt,
        at -> Timestamp,
        line -> Text,
    }
}

diesel::table! {
    events (id) {
        id -> BigInt,
        kind -> Text,
        severity -> Text,
        actor -> Text,
        action -> Text,
        target_type -> Nullable<Text>,
        target_id -> Nullable<Text>,
        message -> Text,
        details -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    vps_claims (vps_id) {
        vps_id -> BigInt,
        task_id -> BigInt,
        operation -> Text,
        claimed_at -> Timestamp,
    }
}

diesel::table! {
    host_reservations (task_id, host_id, vps_id) {
        task_id -> BigInt,
        host_id -> BigInt,
        vps_id -> BigInt,
    }
}

diesel::table! {
    netmon_state (id) {
        id -> BigInt,
        manager -> Text,
        saved_ms -> BigInt,
        saved_at -> Timestamp,
    }
}

diesel::table! {
    operations (task_id) {
        task_id -> BigInt,
        kind -> Text,
        vps_id -> BigInt,
        params -> Text,
        step -> Text,
        phase -> Text,
        owner -> Text,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    user_ssh_keys (id) {
        id -> BigInt,
        user_id -> BigInt,
        name -> Text,
        public_key -> Text,
        fingerprint -> Text,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(user_ssh_keys -> users (user_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(api_tokens -> users (user_id));
diesel::joinable!(vpses -> hosts (host_id));
diesel::joinable!(host_rollups -> hosts (host_id));
diesel::joinable!(vpses -> templates (template_id));
diesel::joinable!(task_logs -> tasks (task_id));

diesel::table! {
    provision_machines (mac) {
        mac -> Text,
        name -> Text,
        state -> Text,
        approved -> Bool,
        address -> Nullable<Text>,
        gateway -> Nullable<Text>,
        token_sha256 -> Nullable<Text>,
        token_expires_at -> Nullable<Timestamp>,
        host_id -> Nullable<BigInt>,
        stage -> Text,
        message -> Text,
        first_seen_at -> Timestamp,
        last_seen_at -> Timestamp,
        join_host_key -> Nullable<Text>,
        join_address -> Nullable<Text>,
        image_id -> Nullable<Text>,
    }
}

diesel::table! {
    alert_targets (id) {
        id -> BigInt,
        name -> Text,
        channel -> Text,
        secret -> Nullable<Text>,
        rules -> Text,
        enabled -> Bool,
        created_at -> Timestamp,
    }
}

diesel::table! {
    alert_incidents (id) {
        id -> BigInt,
        incident_key -> Text,
        rule -> Text,
        severity -> Text,
        title -> Text,
        detail -> Text,
        opened_at -> Timestamp,
        cleared_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    alert_messages (id) {
        id -> BigInt,
        target_id -> BigInt,
        dedupe -> Text,
        subject -> Text,
        body -> Text,
        created_at -> Timestamp,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        sent_at -> Nullable<Timestamp>,
        failed_at -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
    }
}

diesel::joinable!(alert_messages -> alert_targets (target_id));

diesel::table! {
    drills (id) {
        id -> BigInt,
        vps_id -> BigInt,
        vps_name -> Text,
        host_id -> BigInt,
        host_name -> Text,
        task_id -> Nullable<BigInt>,
        cycle -> BigInt,
        point_taken_at -> Timestamp,
        started_by -> Text,
        state -> Text,
        started_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
        rto_ms -> Nullable<BigInt>,
        rpo_ms -> Nullable<BigInt>,
        message -> Nullable<Text>,
        cleaned -> Bool,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    drills,
    alert_targets,
    alert_incidents,
    alert_messages,
    provision_machines,
    netmon_state,
    duplo_points,
    users,
    sessions,
    api_tokens,
    user_ssh_keys,
    settings,
    hosts,
    templates,
    vpses,
    tasks,
    task_logs,
    events,
    host_rollups,
    vps_claims,
    host_reservations,
    operations,
);

diesel::table! {
    host_rollups (host_id, minute) {
        host_id -> BigInt,
        minute -> Timestamp,
        samples -> Integer,
        cpu_avg -> Double,
        cpu_max -> Double,
        memory_avg -> Double,
        memory_max -> Double,
        load_avg -> Double,
        load_max -> Double,
        rx_avg -> Double,
        rx_max -> Double,
        tx_avg -> Double,
        tx_max -> Double,
        disk_read_avg -> Double,
        disk_read_max -> Double,
        disk_write_avg -> Double,
        disk_write_max -> Double,
    }
}
