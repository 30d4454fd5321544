"""Operating and demonstrating SpineWatch: doctor, the embedded broker, the demo pipeline and its views."""
