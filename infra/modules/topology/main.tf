# Reads topology.yaml and derives every messaging resource exactly as common/topology.py
# does (defaults, handler subscriptions and their filters, retained dead letters). No
# provider: `terraform init` runs offline, so tests/infra compares these outputs with the
# Python model and any drift between the two fails `make test`.

locals {
  raw = yamldecode(file(var.topology_file))

  # A key left out, or present with no items (null), is an empty list.
  absent_is_empty = {
    for key in ["topics", "subscriptions", "pull_subscriptions", "sources", "handlers", "queues", "jobs", "secrets"] :
    key => [for item in flatten([try(local.raw[key], [])]) : item if item != null]
  }
  raw_topics        = local.absent_is_empty["topics"]
  raw_subscriptions = local.absent_is_empty["subscriptions"]
  raw_pulls         = local.absent_is_empty["pull_subscriptions"]
  raw_sources       = local.absent_is_empty["sources"]
  raw_handlers      = local.absent_is_empty["handlers"]
  raw_queues        = local.absent_is_empty["queues"]
  raw_jobs          = local.absent_is_empty["jobs"]
  handler_defaults  = try(local.raw.handler_defaults, null) # merge() skips a null

  source_topic = { for s in local.raw_sources : s.name => s.topic }

  declared_subscriptions = [
    for s in local.raw_subscriptions : {
      name                 = s.name
      topic                = s.topic
      push_path            = s.push_path
      ack_deadline_seconds = try(s.ack_deadline_seconds, 10)
      retry_policy = try(s.retry_policy, null) == null ? null : {
        minimum_backoff_s = try(s.retry_policy.minimum_backoff_s, 10)
        maximum_backoff_s = try(s.retry_policy.maximum_backoff_s, 600)
      }
      dead_letter_policy = try(s.dead_letter_policy, null) == null ? null : {
        dead_letter_topic = s.dead_letter_policy.dead_letter_topic
        # Pub/Sub reads 0 as its default, 5.
        max_delivery_attempts = try(s.dead_letter_policy.max_delivery_attempts, 5) == 0 ? 5 : try(s.dead_letter_policy.max_delivery_attempts, 5)
      }
      enable_message_ordering = try(s.enable_message_ordering, false)
      filter                  = try(coalesce(s.filter, ""), "")
    }
  ]
  declared_names = toset([for s in local.raw_subscriptions : s.name])

  # A handler's settings: handler_defaults, then its own (a shallow merge, as in Python).
  handlers = [for h in local.raw_handlers : merge(local.handler_defaults, h)]

  replays_clause = { for h in local.handlers : h.name => "(NOT attributes:replay_to OR attributes.replay_to = \"${h.name}\")" }

  typed_clauses = {
    for h in local.handlers : h.name => [
      for source in sort(keys(h.events)) : (
        contains(h.events[source], "*")
        ? "attributes.source = \"${source}\""
        : format(
          "attributes.source = \"%s\" AND %s",
          source,
          length(h.events[source]) == 1
          ? local.type_tests[h.name][source][0]
          : "(${join(" OR ", local.type_tests[h.name][source])})"
        )
      )
    ]
  }
  type_tests = {
    for h in local.handlers : h.name => {
      for source, patterns in h.events : source => [
        for p in patterns : endswith(p, "*")
        ? "hasPrefix(attributes.event_type, \"${trimsuffix(p, "*")}\")"
        : "attributes.event_type = \"${p}\""
      ]
    }
  }
  source_clauses = {
    for h in local.handlers : h.name => [for source in sort(keys(h.events)) : "attributes.source = \"${source}\""]
  }
  # As handler_filter in Python: with the types first, then with the sources only.
  candidate_filters = {
    for h in local.handlers : h.name => [
      for clauses in [local.typed_clauses[h.name], local.source_clauses[h.name]] : format(
        "(%s) AND %s",
        length(clauses) == 1 ? clauses[0] : join(" OR ", [for c in clauses : "(${c})"]),
        local.replays_clause[h.name]
      )
    ]
  }
  # Pub/Sub's limit is 256 bytes; names and types are ASCII (the Python model checks), so
  # length() counts bytes. Over it, the handler checks the types itself.
  max_filter_bytes = 256
  handler_filter = {
    for h in local.handlers : h.name => (
      length(local.candidate_filters[h.name][0]) <= local.max_filter_bytes
      ? local.candidate_filters[h.name][0]
      : local.candidate_filters[h.name][1]
    )
  }

  handler_subscriptions = [
    for h in local.handlers : {
      name                 = h.name
      topic                = local.source_topic[keys(h.events)[0]]
      push_path            = "/pubsub/${h.name}"
      ack_deadline_seconds = try(h.ack_deadline_seconds, 30)
      retry_policy = {
        minimum_backoff_s = try(h.retry_policy.minimum_backoff_s, 10)
        maximum_backoff_s = try(h.retry_policy.maximum_backoff_s, 600)
      }
      dead_letter_policy = {
        dead_letter_topic     = try(h.dead_letter_policy.dead_letter_topic, "events-dead-letter")
        max_delivery_attempts = try(h.dead_letter_policy.max_delivery_attempts, 5) == 0 ? 5 : try(h.dead_letter_policy.max_delivery_attempts, 5)
      }
      enable_message_ordering = false
      filter                  = local.handler_filter[h.name]
    } if !contains(local.declared_names, h.name)
  ]

  subscriptions = concat(local.declared_subscriptions, local.handler_subscriptions)

  dead_letter_topics = distinct([
    for s in local.subscriptions : s.dead_letter_policy.dead_letter_topic if s.dead_letter_policy != null
  ])

  declared_pulls = [
    for p in local.raw_pulls : {
      name                 = p.name
      topic                = p.topic
      ack_deadline_seconds = try(p.ack_deadline_seconds, 60)
      message_retention_s  = try(p.message_retention_s, 604800)
      description          = try(p.description, "")
    }
  ]
  retained_pulls = [
    for topic in local.dead_letter_topics : {
      name                 = "${topic}-retained"
      topic                = topic
      ack_deadline_seconds = 60
      message_retention_s  = 604800
      description          = "a week of dead letters, kept while the sink is down"
    } if !contains([for p in local.raw_pulls : p.topic], topic)
  ]
  pull_subscriptions = concat(local.declared_pulls, local.retained_pulls)

  queues = [
    for q in local.raw_queues : {
      name      = q.name
      push_path = "/tasks/${q.name}"
      rate_limits = {
        max_dispatches_per_second = try(q.rate_limits.max_dispatches_per_second, 500)
        max_concurrent_dispatches = try(q.rate_limits.max_concurrent_dispatches, 1000)
      }
      retry_config = {
        max_attempts         = try(q.retry_config.max_attempts, 100)
        max_retry_duration_s = try(q.retry_config.max_retry_duration_s, 0)
        min_backoff_s        = try(q.retry_config.min_backoff_s, 0.1)
        max_backoff_s        = try(q.retry_config.max_backoff_s, 3600)
        max_doublings        = try(q.retry_config.max_doublings, 16)
      }
      dispatch_deadline_s = try(q.dispatch_deadline_s, 600)
    }
  ]

  jobs = [
    for j in local.raw_jobs : {
      name        = j.name
      push_path   = "/cron/${j.name}"
      schedule    = j.schedule
      time_zone   = try(j.time_zone, "Etc/UTC")
      description = try(j.description, "")
      retry_config = {
        retry_count          = try(j.retry_config.retry_count, 0)
        max_retry_duration_s = try(j.retry_config.max_retry_duration_s, 0)
        min_backoff_s        = try(j.retry_config.min_backoff_s, 5)
        max_backoff_s        = try(j.retry_config.max_backoff_s, 3600)
        max_doublings        = try(j.retry_config.max_doublings, 5)
      }
      attempt_deadline_s = try(j.attempt_deadline_s, 180)
    }
  ]

  topics        = [for t in local.raw_topics : t.name]
  source_topics = distinct([for s in local.raw_sources : s.topic])
  secrets       = sort(distinct(concat(local.absent_is_empty["secrets"], [for s in local.raw_sources : s.secret])))
}
