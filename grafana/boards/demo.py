"""The demo's board, provisioned with the demo's config: is its video pipeline producing, and are approvals and
monetization holding up? (The kit's business board is rendered from the config: opsmon/boards.py.)"""

from pathlib import Path

from grafana_foundation_sdk.builders import dashboard

from grafana.boards import panels as p
from grafana.boards import rules

UID = "opsmon-demo-video"
FILE = "demo-video"
# Beside the demo's rules, not among the kit's boards: the demo's config names it (stack.grafana.dashboard_files).
FOLDER = Path(__file__).resolve().parents[2] / "demo" / "dashboards"
VIDEOS, VIDEOS_PER_HOUR = "suffix:videos", "suffix:videos/h"
PER_HOUR = 3600
H = p.on_hosts()


def per_hour(counter: str, by: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({counter}{H}[$__rate_interval])) * {PER_HOUR}"


def day(name: str, by: str = "") -> str:
    """A recorded count of the last 24 hours, summed over the selected hosts (or per `by`)."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (job:business_videos_{name}:increase1d{H})"


def share(part: str, whole: str, by: str = "") -> str:
    """One day's count over another's, each summed first."""
    return f"{day(part, by)} / {day(whole, by)}"


def stalled_per_host() -> str:
    """1 for a host where nothing was processed in the alert's window while videos waited all along, from the
    series OpsmonVideoProcessingStalled reads; a fleet sum would hide one stalled host behind the others."""
    return (f"max((sum by (host) (instance:business_videos_processed:increase30m{H}) == bool 0)"
            f" * on (host) (min by (host) (instance:business_videos_queued:min_over_time30m{H}) > bool 0))")


def build() -> dashboard.Dashboard:
    stalled = rules.limit("OpsmonVideoProcessingStalled")
    return p.board(
        UID, "opsmon demo / Video pipeline",
        "Is the video pipeline producing, and are approvals and monetization holding up?",
        [
            p.Row(5, [
                (p.stat("Processed, last 24 h", "Videos the pipeline finished in the last 24 hours. "
                        "OpsmonVideosProcessedLow compares it with the same day last week.",
                        day("processed"), VIDEOS, p.neutral()), 5),
                (p.stat("Approval rate, last 24 h", "Approved videos over processed videos in the last 24 hours "
                        "(counts summed, then divided).",
                        share("approved", "processed"), p.RATIO, p.neutral()), 5),
                (p.stat("Monetization conversion, last 24 h", "Monetized videos over approved videos in the last "
                        "24 hours (counts summed, then divided).",
                        share("monetized", "approved"), p.RATIO, p.neutral()), 5),
                (p.stat("Backlog now", "Videos waiting to be processed.", f"sum(business_videos_queued{H})", VIDEOS,
                        p.neutral(), sparkline=True), 4),
                (p.state("Pipeline", "Stalled when, on any selected host, nothing was processed in 30 minutes while "
                         "videos waited all along, the window of OpsmonVideoProcessingStalled, which pages when it "
                         "lasts 5 minutes more.", stalled_per_host(),
                         "moving", "stalled", zero_color="green", one_color=stalled.color), 5),
            ]),
            p.Row(8, [
                (p.graph("Processed per day", "Videos finished in the 24 hours before each moment, per host, "
                         "against the same moment a week earlier (OpsmonVideosProcessedLow fires under half of it).",
                         [p.query(day("processed", "host"), "{{host}} last 24 h"),
                          p.query(f"sum by (host) (job:business_videos_processed:increase1d{H} offset 1w)",
                                  "{{host}} a week earlier")],
                         VIDEOS, minimum=0), 12),
                (p.graph("Approval and monetization rates", "Approval and monetization over the last hour (per "
                         "host and job) and the last day (per host); the drop alerts fire when the hour falls under "
                         "half the day.",
                         [p.query(f"job:business_approval:ratio_increase1h{H}",
                                  "{{host}} approval, last hour ({{job}})"),
                          p.query(share("approved", "processed", "host"), "{{host}} approval, last day"),
                          p.query(f"job:business_monetization:ratio_increase1h{H}",
                                  "{{host}} monetization, last hour ({{job}})"),
                          p.query(share("monetized", "approved", "host"), "{{host}} monetization, last day")],
                         p.RATIO, minimum=0, maximum=1), 12),
            ]),
            p.Row(8, [
                (p.graph("Throughput", "Videos processed, approved and monetized per hour, per host, counted where "
                         "each happens.",
                         [p.query(per_hour(f"business_videos_{event}_total", "host"), f"{{{{host}}}} {event}")
                          for event in ("processed", "approved", "monetized")],
                         VIDEOS_PER_HOUR, minimum=0), 12),
                (p.graph("Backlog", "Videos waiting to be processed, per host.",
                         [p.query(f"sum by (host) (business_videos_queued{H})", "{{host}} queued")], VIDEOS,
                         minimum=0), 12),
            ]),
        ],
    )
