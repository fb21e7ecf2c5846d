require 'time'

class Helper
  def show_time(label:, time:)
    p [label, Time.parse(time).iso8601]
  end

  def describe(size:, color:)
    puts "a #{size} #{color} thing"
  end
end
