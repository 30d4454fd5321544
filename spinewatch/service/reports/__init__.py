"""What the therapist reads besides the dashboards: the patient report, the demo's session report, export."""
