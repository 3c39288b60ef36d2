"""Business: is the video pipeline producing, and are approvals and monetization holding up?"""

from grafana_foundation_sdk.builders import dashboard

from grafana.boards import panels as p
from grafana.boards import rules

UID = "opsmon-business"
FILE = "business"
PER_HOUR = 3600


def per_hour(counter: str) -> str:
    return f"sum(rate({counter}[$__rate_interval])) * {PER_HOUR}"


def build() -> dashboard.Dashboard:
    stalled = rules.limit("OpsmonVideoProcessingStalled")
    return p.board(
        UID, "opsmon / Business",
        "Is the video pipeline producing, and are approvals and monetization holding up?",
        [
            p.Row(5, [
                (p.stat("Processed, last 24 h", "Videos the pipeline finished in the last 24 hours. "
                        "OpsmonVideosProcessedLow compares it with the same day last week.",
                        "sum(job:business_videos_processed:increase1d)", p.VIDEOS, p.neutral()), 5),
                (p.stat("Approval rate, last 24 h", "Approved videos over processed videos in the last 24 hours "
                        "(counts summed, then divided).",
                        "sum(job:business_videos_approved:increase1d) / sum(job:business_videos_processed:increase1d)",
                        p.RATIO, p.neutral()), 5),
                (p.stat("Monetization conversion, last 24 h", "Monetized videos over approved videos in the last "
                        "24 hours (counts summed, then divided).",
                        "sum(job:business_videos_monetized:increase1d) / sum(job:business_videos_approved:increase1d)",
                        p.RATIO, p.neutral()), 5),
                (p.stat("Backlog now", "Videos waiting to be processed.", "sum(business_videos_queued)", p.VIDEOS,
                        p.neutral(), sparkline=True), 4),
                (p.state("Pipeline", "Stalled when nothing was processed lately while videos wait; "
                         "OpsmonVideoProcessingStalled pages when it lasts.",
                         "(sum(rate(business_videos_processed_total[$__rate_interval])) == bool 0)"
                         " * (sum(business_videos_queued) > bool 0)",
                         "moving", "stalled", zero_color="green", one_color=stalled.color), 5),
            ]),
            p.Row(8, [
                (p.graph("Processed per day", "Videos finished in the 24 hours before each moment, against the "
                         "same moment a week earlier (OpsmonVideosProcessedLow fires under half of it).",
                         [p.query("sum(job:business_videos_processed:increase1d)", "last 24 h"),
                          p.query("sum(job:business_videos_processed:increase1d offset 1w)", "a week earlier")],
                         p.VIDEOS, minimum=0), 12),
                (p.graph("Approval and monetization rates", "Approval and monetization over the last hour (per "
                         "job) and the last day; the drop alerts fire when the hour falls under half the day.",
                         [p.query("job:business_approval:ratio_increase1h", "approval, last hour ({{job}})"),
                          p.query("sum(job:business_videos_approved:increase1d)"
                                  " / sum(job:business_videos_processed:increase1d)", "approval, last day"),
                          p.query("job:business_monetization:ratio_increase1h", "monetization, last hour ({{job}})"),
                          p.query("sum(job:business_videos_monetized:increase1d)"
                                  " / sum(job:business_videos_approved:increase1d)", "monetization, last day")],
                         p.RATIO, minimum=0, maximum=1), 12),
            ]),
            p.Row(8, [
                (p.graph("Throughput", "Videos processed, approved and monetized per hour, counted where each "
                         "happens.",
                         [p.query(per_hour("business_videos_processed_total"), "processed"),
                          p.query(per_hour("business_videos_approved_total"), "approved"),
                          p.query(per_hour("business_videos_monetized_total"), "monetized")],
                         p.VIDEOS_PER_HOUR, minimum=0), 12),
                (p.graph("Backlog", "Videos waiting to be processed.",
                         [p.query("sum(business_videos_queued)", "queued")], p.VIDEOS, minimum=0), 12),
            ]),
        ],
    )
